#!/usr/bin/env bash
# Retention on a target node, with two real nodes (docs/protocols/node-api.md, "Retention"):
#   1. the protection's retention_seconds reaches the target in the link's HELLO and shows in
#      both nodes' status;
#   2. the target's periodic pass merges history older than the window into the base, but
#      stops at the point a test-failover overlay stands on: that overlay still reads its
#      point's data;
#   3. with the overlay gone, POST .../retention merges the rest: old points are refused with
#      a clear error, the newest point still equals the source;
#   3b. kill -9 of the target around the moment a pass merges 16 MiB (before, during or after
#      it, at random): it restarts, retention works again, and the newest point equals the
#      source;
#   4. the setting survives a restart of the target with the source's link stopped;
#   5. bad values and unknown replicas get clear errors.
# Usage: retention.sh FERRY_BINARY
set -euo pipefail
ferry=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
work=$(mktemp -d /tmp/ferry-retention.XXXXXX)
NODES="a b"
# shellcheck source=lib/nodes.sh
source "$here/lib/nodes.sh"

# The target applies retention every 300 ms (the default is a minute).
printf '[retention]\ninterval_ms = 300\n' >>"$work/b.toml"
start_node a
start_node b
window=10
truncate -s 16M "$work/disk0.img"
api a POST /v1/volumes "{\"name\": \"disk0\", \"disk\": \"$work/disk0.img\"}" >/dev/null
api a POST /v1/volumes/disk0/protect "{\"target\": \"127.0.0.1:${link_port[b]}\", \"marker_interval_ms\": 1000,
  \"retention_seconds\": $window, \"compression\": \"none\"}" >/dev/null
uri() { echo "nbd+unix:///$1?socket=$work/$2.sock"; }
rep() { api b GET /v1/status | json "[r for r in j['replicas'] if r['name']=='disk0'][0]$1"; }
replica_ready disk0
qio() {  # qio [-r] URI COMMAND...: qemu-io on an NBD export (-r: read-only, for views)
  local args=()
  if [[ $1 == -r ]]; then
    args+=(-r)
    shift
  fi
  local u=$1
  shift
  for c in "$@"; do args+=(-c "$c"); done
  qemu-io -f raw "${args[@]}" "$u" >"$work/qemu-io.log" 2>&1 || fail "qemu-io $* on $u: $(cat "$work/qemu-io.log")"
  ! grep -q "Pattern verification failed" "$work/qemu-io.log" || fail "qemu-io $* on $u: $(cat "$work/qemu-io.log")"
}

# 1. The window reached the target.
[[ $(rep "['retention']['window_seconds']") == "$window" ]] || fail "target window: $(rep "['retention']")"
[[ $(rep "['retention']['said_by_source']") == True ]] || fail "target did not record the source's window: $(rep "['retention']")"
[[ $(api a GET /v1/status | json "j['volumes'][0]['link']['retention_seconds']") == "$window" ]] ||
  fail "source status: $(api a GET /v1/status)"
echo "retention: the source's window of $window s is the target's"

# 2. An overlay (a test failover) pins its point; the periodic pass merges up to it only.
qio "$(uri disk0 a)" "write -P 0x11 0 1M"
old=$(mark old)
wait_acked "$old"
api b POST /v1/replicas/disk0/overlays "{\"name\": \"tf\", \"point\": \"$old\"}" >/dev/null
qio "$(uri disk0 a)" "write -P 0x22 1M 1M"
mid=$(mark mid)
wait_acked "$mid"
# Past the window for both marks, then more history.
sleep $((window + 2))
qio "$(uri disk0 a)" "write -P 0x33 2M 1M"
new=$(mark new)
wait_acked "$new"
for _ in $(seq 200); do
  [[ $(rep "['retention'].get('held_by_pins', 0)") == "$old" ]] && break
  sleep 0.1
done
[[ $(rep "['retention'].get('held_by_pins', 0)") == "$old" ]] ||
  fail "the periodic pass did not stop at the overlay's point $old: $(rep "['retention']")"
[[ $(rep "['retention']['last_error']") == "" ]] || fail "retention error: $(rep "['retention']")"
oldest=$(rep "['oldest_point']")
((oldest <= old)) || fail "the overlay's point $old was merged away (oldest point $oldest)"
qio "$(uri disk0/overlay/tf b)" "read -P 0x11 0 1M" "read -P 0 1M 1M"
echo "retention: the periodic pass merged up to the test failover's point $old and kept it readable"

# 3. Without the overlay, the rest of the old history goes.
api b DELETE /v1/replicas/disk0/overlays/tf >/dev/null
out=$(api b POST /v1/replicas/disk0/retention)
merged=$(echo "$out" | json "j['merged_to_seq']")
oldest=$(echo "$out" | json "j['oldest_point']")
[[ $(echo "$out" | json "j['held_by_pins']") == 0 ]] || fail "still held by a pin: $out"
[[ $(echo "$out" | json "j['window_seconds']") == "$window" ]] || fail "window: $out"
# The periodic pass may have merged first: either way the old points are gone now.
((oldest > mid)) || fail "history older than the window is still there: $out"
((oldest <= new)) || fail "the newest point was merged away: $out"
code=$(curl -sS -o "$work/view.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
  --data "{\"point\": \"$old\"}" "http://127.0.0.1:${api_port[b]}/v1/replicas/disk0/views")
[[ $code == 400 || $code == 404 ]] || fail "a merged point opened (HTTP $code): $(cat "$work/view.json")"
grep -q "$old" "$work/view.json" || fail "the error does not name the point: $(cat "$work/view.json")"
last=$(mark last)
wait_acked "$last"
compare_at "$last"
qio -r "$(tgt_uri "$last")" "read -P 0x11 0 1M" "read -P 0x22 1M 1M" "read -P 0x33 2M 1M"
echo "retention: merged through seq $merged; seq $old is refused, the newest point equals the source"

# 3b. kill -9 of the target as a pass merges: the whole disk rewritten, then killed about when
# that history leaves the window (the pass runs every 300 ms).
for round in 1 2; do
  qio "$(uri disk0 a)" "write -P 0x4$round 0 16M"
  big=$(mark "big$round")
  wait_acked "$big"
  sleep "$(awk -v w="$window" -v r="$RANDOM" 'BEGIN { printf "%.2f", w - 0.5 + (r % 1500) / 1000 }')"
  kill9_node b
  start_node b
  for _ in $(seq 100); do
    [[ $(rep "['retention']['last_run']") != None ]] && break
    sleep 0.1
  done
  [[ $(rep "['retention']['last_run']") != None && $(rep "['retention']['last_error']") == "" ]] ||
    fail "retention after a kill -9 of the target: $(rep "['retention']")"
  after=$(mark "after$round")
  wait_acked "$after"
  compare_at "$after"
  qio -r "$(tgt_uri "$after")" "read -P 0x4$round 0 16M"
done
echo "retention: the target killed twice around a merge of 16 MiB restarted, merged again, and equals the source"

# 4. The window survives a restart of the target while no source says it again.
api a POST /v1/volumes/disk0/link/stop >/dev/null
kill9_node b
start_node b
[[ $(rep "['retention']['window_seconds']") == "$window" && $(rep "['retention']['said_by_source']") == True ]] ||
  fail "the window was not kept across a restart: $(rep "['retention']")"
echo "retention: the window was kept across a restart of the target"

# 5. Errors.
truncate -s 1M "$work/disk1.img"
api a POST /v1/volumes "{\"name\": \"disk1\", \"disk\": \"$work/disk1.img\"}" >/dev/null
expect_on a 400 "retention_seconds 0 is out of range" POST /v1/volumes/disk1/protect "{\"target\": \"127.0.0.1:1\", \"retention_seconds\": 0}"
expect_on a 400 "retention_seconds" POST /v1/volumes/disk1/protect "{\"target\": \"127.0.0.1:1\", \"retention_seconds\": \"1d\"}"
expect_on b 404 "nope" POST /v1/replicas/nope/retention "{}"
echo "retention: bad values and unknown replicas get clear errors"
echo "PASS"
