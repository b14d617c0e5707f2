#!/usr/bin/env bash
# A link's limits and status through the command interface, with two real nodes:
#   1. the node's throttle from its configuration ([throttle] bytes_per_second) holds the
#      initial sync to that rate, while the target reports its progress (bytes done of the
#      total, rate, ETA) and the source its upload rate;
#   2. the status of both roles once replicating: role, RPO, churn;
#   3. PUT /v1/throttle changes the node's limit at run time: lower, then off; the limit
#      counts bytes on the wire, so data that compresses well moves faster than the limit;
#   4. a marker interval under a second is refused.
# Rates are checked with generous bounds, and durations only in the direction a loaded
# machine cannot break: a throttled transfer takes at least about (bytes - burst) / rate.
# Usage: node_link_status.sh FERRY_BINARY
set -euo pipefail
ferry=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
"$py" -c 'import nbd' 2>/dev/null || { echo "FAIL: python3-libnbd is missing (run tools/install-deps)" >&2; exit 1; }
work=$(mktemp -d /tmp/ferry-link-status.XXXXXX)
NODES="a b"
# shellcheck source=lib/nodes.sh
source "$here/lib/nodes.sh"

MiB=$((1 << 20))
limit=$((2 * MiB))
printf '[throttle]\nbytes_per_second = %d\n' "$limit" >>"$work/a.toml"
start_node a
start_node b

# seconds_since T0: wall seconds since $EPOCHREALTIME was T0.
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
# check EXPR MESSAGE: fails unless the Python expression over j (stdin's JSON) is true.
check() { [[ $(json "$1") == True ]] || fail "$2"; }
# random_writes MIB: MIB MiB of random data through the source splitter, from offset 32 MiB.
random_writes() {
  "$py" - "$src_uri" "$1" <<'PY' || fail "writes through the splitter"
import os, sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for i in range(int(sys.argv[2])):
    h.pwrite(os.urandom(1 << 20), (32 + i) << 20)
h.flush()
PY
}
# timed LABEL CMD...: runs CMD (writes through the splitter), takes marker LABEL and waits until
# the target holds it; sets seq to the marker and secs to the seconds all of it took.
timed() {
  local label=$1 t0=$EPOCHREALTIME
  shift
  "$@"
  seq=$(mark "$label")
  wait_acked "$seq"
  secs=$(seconds_since "$t0")
}
# text_writes MIB: MIB MiB of text (it compresses well) through the source splitter.
text_writes() {
  "$py" - "$src_uri" "$1" <<'PY' || fail "compressible writes through the splitter"
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for i in range(int(sys.argv[2])):
    text = (b"block %d of a text file that compresses well; " % i) * 30000
    h.pwrite(text[: 1 << 20], (32 + i) << 20)
h.flush()
PY
}
rep() { api b GET /v1/status | json "json.dumps([r for r in j['replicas'] if r['name']=='disk0'][0]$1)"; }
vol() { api a GET /v1/status | json "json.dumps([v for v in j['volumes'] if v['name']=='disk0'][0]$1)"; }

truncate -s 64M "$work/disk0.img"
dd if=/dev/urandom of="$work/disk0.img" bs=1M count=12 conv=notrunc status=none
api a POST /v1/volumes "{\"name\": \"disk0\", \"disk\": \"$work/disk0.img\"}" >/dev/null

# 4. A marker interval under a second is refused, and nothing is protected.
out=$(curl -sS -X POST -H "Authorization: Bearer $token" -w '\n%{http_code}' \
      --data "{\"target\": \"127.0.0.1:${link_port[b]}\", \"marker_interval_ms\": 999}" \
      "http://127.0.0.1:${api_port[a]}/v1/volumes/disk0/protect")
[[ ${out##*$'\n'} == 400 && $out == *"marker_interval_ms 999 is below the minimum of 1000"* ]] ||
  fail "marker_interval_ms 999: expected HTTP 400 naming the minimum, got: $out"
[[ $(vol "['link']") == null ]] || fail "a refused protect left a link: $(vol "['link']")"
echo "marker interval: 999 ms refused with the minimum named"

# 1. The initial sync of 12 MiB under the node's 2 MiB/s limit from the configuration.
t0=$EPOCHREALTIME
api a POST /v1/volumes/disk0/protect "{\"target\": \"127.0.0.1:${link_port[b]}\", \"marker_interval_ms\": 1000}" >/dev/null
seen_progress=0 seen_upload=0
for _ in $(seq 1200); do
  sync=$(rep "['initial_sync']" 2>/dev/null || echo null)
  [[ $sync == null ]] && { sleep 0.05; continue; }
  [[ $(echo "$sync" | json "j['running']") == True ]] || break
  if ((!seen_progress)) && [[ $(echo "$sync" | json "j['bytes_done'] >= 6 * $MiB") == True ]]; then
    # The source counted 12 MiB allocated. The rate is bytes over time since the handshake:
    # frames of 1 MiB, each waiting for the debt of the one before, put 6 MiB at 2.4 s or
    # later.
    echo "$sync" | check "j['bytes_total'] == 12 * $MiB" "bytes_total is not 12 MiB: $sync"
    echo "$sync" | check "0 < j['bytes_done'] <= j['bytes_total']" "bytes_done out of range: $sync"
    echo "$sync" | check "0 < j['bytes_per_second'] <= 2 * $limit" "bytes_per_second not within the limit: $sync"
    echo "$sync" | check "j['eta_seconds'] is not None and 0 <= j['eta_seconds'] < 3600" "eta_seconds: $sync"
    echo "$sync" | check "0 < j['percent'] <= 100" "percent: $sync"
    seen_progress=1
  fi
  up=$(vol "['link']['upload_bytes_per_second']")
  awk -v u="$up" -v l="$limit" 'BEGIN { exit !(u <= 2 * l) }' ||
    fail "upload_bytes_per_second $up is over twice the node's limit $limit"
  awk -v u="$up" 'BEGIN { exit !(u > 0) }' && seen_upload=1
  sleep 0.05
done
secs=$(seconds_since "$t0")
[[ $(rep "['initial_sync']['running']") == false ]] || fail "the initial sync did not finish: $(rep "")"
((seen_progress)) || fail "never saw the target's progress with 6 MiB done"
((seen_upload)) || fail "upload_bytes_per_second never rose above 0 during the sync"
# At least (12 MiB - the last 1 MiB frame - a 256 KiB burst) / 2 MiB/s = 5.4 s.
awk -v s="$secs" 'BEGIN { exit !(s >= 4.0) }' || fail "the sync of 12 MiB at 2 MiB/s took only $secs s"
echo "configured throttle: initial sync of 12 MiB in $secs s at 2 MiB/s; progress, rate and ETA reported"

# 2. Status of both roles, replicating.
[[ $(vol "['role']") == '"source"' ]] || fail "volume role: $(vol "['role']")"
[[ $(rep "['role']") == '"target"' ]] || fail "replica role: $(rep "['role']")"
seq=$(mark status)
wait_acked "$seq"
for _ in $(seq 200); do [[ $(vol "['link']['rpo_seconds']") != null ]] && break; sleep 0.05; done
vol "['link']" | check "j['rpo_seconds'] is not None and 0 <= j['rpo_seconds'] < 60" \
  "rpo_seconds with markers every second: $(vol "['link']")"
# Churn while a writer runs (the rate is sampled every second).
"$py" - "$src_uri" <<'PY' &
import os, sys, time, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for i in range(600):
    h.pwrite(os.urandom(64 << 10), (48 << 20) + (i % 64) * (64 << 10))
    time.sleep(0.02)
PY
writer=$!
churn=0
for _ in $(seq 400); do
  churn=$(vol "['churn_bytes_per_second']")
  awk -v c="$churn" 'BEGIN { exit !(c > 0) }' && break
  sleep 0.05
done
kill "$writer" 2>/dev/null || true
wait "$writer" 2>/dev/null || true
writer=
# At most 64 KiB every 20 ms: 3.2 MB/s.
awk -v c="$churn" 'BEGIN { exit !(c > 0 && c <= 4 * 1048576) }' || fail "churn_bytes_per_second $churn with a writer running"
echo "status: roles, RPO and churn ($churn B/s) reported"

# 3. The limit changed at run time: 1 MiB/s, then none. Records travel in batches of up to
# 4 MiB, and a batch waits only for the debt of the one before it, so N MiB take at least
# (N - 4 - burst) / rate.
api a PUT /v1/throttle "{\"bytes_per_second\": $MiB}" >/dev/null
[[ $(api a GET /v1/status | json "j['node']['throttle_bytes_per_second']") == "$MiB" ]] ||
  fail "the node's limit is not in its status: $(api a GET /v1/status | json "j['node']")"
timed slower random_writes 12
# At least 7.75 s at 1 MiB/s; at the configured 2 MiB/s it could have been 3.9 s.
awk -v s="$secs" 'BEGIN { exit !(s >= 6.5) }' || fail "12 MiB at 1 MiB/s replicated in only $secs s"
echo "run-time throttle: 12 MiB at 1 MiB/s in $secs s"
api a PUT /v1/throttle '{"bytes_per_second": 0}' >/dev/null
timed unlimited random_writes 24
# Still at 1 MiB/s this would take at least 19.75 s; unlimited, loopback takes a few.
awk -v s="$secs" 'BEGIN { exit !(s < 15) }' || fail "24 MiB with the throttle off took $secs s"
compare_at "$seq"
echo "throttle off: 24 MiB in $secs s; target equals source"

# The limit counts bytes on the wire: 12 MiB of text (zstd makes it a few hundred KiB) at
# 512 KiB/s. Counted before compression it would take at least (12 - 4 - burst) / 0.5 = 15.75 s.
api a PUT /v1/throttle "{\"bytes_per_second\": $((MiB / 2))}" >/dev/null
timed compressible text_writes 12
awk -v s="$secs" 'BEGIN { exit !(s < 12) }' ||
  fail "12 MiB of text at 512 KiB/s on the wire took $secs s: the limit counted bytes before compression"
compare_at "$seq"
api a PUT /v1/throttle '{"bytes_per_second": 0}' >/dev/null
echo "wire-bytes throttle: 12 MiB of text at 512 KiB/s (on the wire) in $secs s"
echo "node link status: ok"
