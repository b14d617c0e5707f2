#!/usr/bin/env bash
# barrier_bench.sh FERRY [POINTS]: how long a consistency-group point holds the members' write
# acknowledgements, on loopback, with a writer running. A benchmark, not a test: it exits 0
# whatever the figures (non-zero only if something could not run).
#
#   Target: p99 hold <= 50 ms.
#
# `ferry server` and two nodes (a at primary, b at recovery, TLS links); two machines with a
# 64 MiB disk each on node a, protected into one group under a policy with a crash-consistent
# interval of 1 s (app-consistent points off), so the server takes a group point every second:
# hold both volumes on node a, mark, release. A libnbd writer writes 4 KiB blocks to both disks
# through node a's splitter exports all along (each write waits for its acknowledgement, so a
# hold stalls it). After POINTS points (default 200) the figures come from the server's store:
# group_points.hold_ms, the server's time from before the hold request to after the release
# answer (three HTTP calls to the node). Also printed: how many writes the writer completed.
set -euo pipefail
ferry=$(realpath "$1")
points=${2:-200}
here=$(cd "$(dirname "$0")/../tests" && pwd)
py=/usr/bin/python3
work=$(mktemp -d /tmp/ferry-barrier-bench.XXXXXX)
NODES="a b"
source "$here/lib/nodes.sh"
source "$here/lib/server.sh"
start_server
url="http://127.0.0.1:$server_port"
enroll_nodes >/dev/null
ok POST /policies '{"name": "bench", "rpo_threshold_seconds": 60, "crash_consistent_interval_seconds": 1, "app_consistent_interval_seconds": 0}' >/dev/null
for m in 1 2; do
  ok POST /machines "{\"name\": \"m$m\", \"site\": \"primary\", \"node\": \"node-a\", \"disks\": [{\"name\": \"disk0\", \"path\": \"$work/m$m.img\", \"size\": 67108864}]}" >/dev/null
  wait_job "$(ok POST /items "{\"machine\": \"m$m\", \"target_site\": \"recovery\", \"policy\": \"bench\", \"consistency_group\": \"bench\"}" | job_of)"
done
cat >"$work/writer.py" <<'PY'
import os, sys, nbd
hs = []
for uri in sys.argv[1:3]:
    h = nbd.NBD()
    h.connect_uri(uri)
    hs.append(h)
n = 0
while not os.path.exists(sys.argv[3]):
    n += 1
    for h in hs:
        h.pwrite(b"%012d" % n + b"\0" * 4084, (n % 16384) * 4096)
print(n)
PY
"$py" "$work/writer.py" "nbd+unix:///m1.disk0?socket=$work/a.sock" "nbd+unix:///m2.disk0?socket=$work/a.sock" \
  "$work/stop" >"$work/writer.out" 2>&1 &
writer=$!
count() {  # the group points in the server's store
  "$py" -c "import sqlite3; print(sqlite3.connect('file:$work/server/ferry.db?mode=ro', uri=True).execute('SELECT COUNT(*) FROM group_points').fetchone()[0])"
}
start=$(count)
t0=$(date +%s)
while (($(count) < points + start)); do sleep 2; done
touch "$work/stop"
wait "$writer"
writer=
elapsed=$(($(date +%s) - t0))
echo "points: $points (after $start at the start), in ${elapsed} s; the writer completed $(cat "$work/writer.out") writes per disk"
"$py" - "$work/server/ferry.db" "$points" <<'PY'
import math, sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
holds = [r[0] for r in db.execute("SELECT hold_ms FROM group_points ORDER BY time_ns DESC LIMIT ?", (int(sys.argv[2]),))]
holds.sort()
pct = lambda p: holds[max(1, math.ceil(p / 100 * len(holds))) - 1]
print("hold ms over %d group points: p50 %.2f  p99 %.2f  max %.2f  (target p99 <= 50)" %
      (len(holds), pct(50), pct(99), holds[-1]))
PY
problems=$(ok GET /consistency-groups/bench | json 'j["problems"]')
echo "group problems at the end: $problems"
