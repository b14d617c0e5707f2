#!/usr/bin/env bash
# Node features through the command interface, with two real nodes:
#   1. synchronous mode: every write the client saw answered is at the target even when the
#      source dies right after (RPO 0); with the target down, writes fall back to
#      asynchronous after the timeout (an event) and return to synchronous once caught up;
#   2. app-consistent markers run freeze, marker, thaw in that order with the volume in the
#      environment; a hung freeze is killed at its timeout, thaw still runs, no marker, event;
#   3. a barrier over two volumes holds write answers, marks both with one group marker,
#      releases; a barrier that is not released expires (event) and cannot be marked;
#   4. a pending log over its cap (target down) drops to the changed-block map; when the
#      target is back the link resyncs those blocks and the target equals the source again;
#   5. scan capture: a disk the machine writes directly is read and compared each cycle; only
#      changed chunks travel, and the target's point at each cycle equals the disk;
#   6. bad requests get clear errors.
# Usage: node_features.sh FERRY_BINARY
set -euo pipefail
ferry=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
"$py" -c 'import nbd' 2>/dev/null || { echo "FAIL: python3-libnbd is missing (run tools/install-deps)" >&2; exit 1; }
work=$(mktemp -d /tmp/ferry-features.XXXXXX)
NODES="a b"
# shellcheck source=lib/nodes.sh
source "$here/lib/nodes.sh"

start_node a
start_node b
for v in disk0 disk1 disk2; do
  truncate -s 32M "$work/$v.img"
  api a POST /v1/volumes "{\"name\": \"$v\", \"disk\": \"$work/$v.img\"}" >/dev/null
done
uri() { echo "nbd+unix:///$1?socket=$work/$2.sock"; }
replica_ready() {  # replica_ready NAME: the target finished its initial sync
  for _ in $(seq 600); do
    api b GET /v1/status | json "any(r['name']=='$1' and not r['initial_sync']['running'] for r in j['replicas'])" | grep -q True && return 0
    sleep 0.05
  done
  fail "initial sync of $1 did not finish"
}
events_with() { api a GET /v1/events | json "sum(1 for e in j['events'] if '$1' in e['message'])"; }

# 1. Synchronous mode.
api a POST /v1/volumes/disk0/protect "{\"target\": \"127.0.0.1:${link_port[b]}\", \"mode\": \"sync\", \"sync_timeout_ms\": 1000}" >/dev/null
replica_ready disk0
: >"$work/sync-writes.log"
"$py" "$here/tools/numbered_writer.py" "$(uri disk0 a)" 1024 3 "$work/sync-writes.log" 400 ||
  fail "writer through the synchronous splitter"
kill9_node a  # the source is gone for good: what it answered must already be at the target
"$py" "$here/tools/numbered_writer.py" check "$(uri disk0@latest b)" 1024 3 "$work/sync-writes.log" >"$work/check.log" 2>&1 ||
  fail "synchronous mode lost answered writes: $(cat "$work/check.log")"
echo "sync: 400 answered writes all at the target with the source killed"
start_node a
[[ $(api a GET /v1/status | json "j['volumes'][0]['link']['synchronous']") == True ]] || fail "sync mode not active after restart"
kill9_node b
: >"$work/fallback.log"
"$py" "$here/tools/numbered_writer.py" "$(uri disk0 a)" 1024 4 "$work/fallback.log" 50 ||
  fail "writes stalled with the target down in synchronous mode"
[[ $(events_with "fell back to asynchronous") -ge 1 ]] || fail "no fallback event: $(api a GET /v1/events)"
[[ $(api a GET /v1/status | json "j['volumes'][0]['link']['synchronous']") == False ]] || fail "still synchronous with the target down"
start_node b
for _ in $(seq 400); do
  [[ $(events_with "synchronous again") -ge 1 ]] && break
  sleep 0.05
done
[[ $(events_with "synchronous again") -ge 1 ]] || fail "never returned to synchronous: $(api a GET /v1/status)"
echo "sync: fell back to asynchronous with the target down, synchronous again after it returned"

# 2. App-consistent markers with hooks.
hooklog="$work/hooks.log"
api a POST /v1/volumes/disk1/protect "{\"target\": \"127.0.0.1:${link_port[b]}\",
  \"freeze_command\": \"echo freeze \$FERRY_VOLUME >>$hooklog\",
  \"thaw_command\": \"echo thaw \$FERRY_VOLUME >>$hooklog\", \"hook_timeout_ms\": 2000}" >/dev/null
seq=$(api a POST /v1/volumes/disk1/markers '{"kind": "app-consistent", "label": "nightly"}' | json 'j["seq"]')
[[ $(cat "$hooklog") == $'freeze disk1\nthaw disk1' ]] || fail "hooks did not run freeze then thaw: $(cat "$hooklog")"
replica_ready disk1
wait_acked "$seq" disk1
api b GET "/v1/replicas/disk1/points?kind=app-consistent" | json "j['points'][0]['seq']" | grep -qx "$seq" ||
  fail "app-consistent point $seq not listed at the target"
api a POST /v1/volumes/disk1/link/stop >/dev/null
api a POST /v1/volumes/disk1/protect "{\"target\": \"127.0.0.1:${link_port[b]}\",
  \"freeze_command\": \"sleep 30\", \"thaw_command\": \"echo thaw-after-hang >>$hooklog\", \"hook_timeout_ms\": 300}" >/dev/null
out=$(curl -sS -X POST -H "Authorization: Bearer $token" --data '{"kind": "app-consistent"}' \
      "http://127.0.0.1:${api_port[a]}/v1/volumes/disk1/markers")
echo "$out" | grep -q 'ran past its timeout' || fail "a hung freeze was not reported: $out"
tail -n1 "$hooklog" | grep -qx 'thaw-after-hang' || fail "thaw did not run after the hung freeze"
[[ $(events_with "no app-consistent point") -ge 1 ]] || fail "no event for the failed freeze"
echo "hooks: freeze, marker, thaw in order; a hung freeze was killed, thawed, reported"

# 3. Barrier over two volumes.
api a POST /v1/volumes/disk2/protect "{\"target\": \"127.0.0.1:${link_port[b]}\"}" >/dev/null
replica_ready disk2
id=$(api a POST /v1/barriers '{"volumes": ["disk1", "disk2"], "timeout_ms": 10000}' | json 'j["id"]')
: >"$work/held.log"
"$py" "$here/tools/numbered_writer.py" "$(uri disk2 a)" 256 5 "$work/held.log" 20 &
writer=$!
sleep 0.5
[[ $(wc -l <"$work/held.log") -eq 0 ]] || fail "a write was answered during the barrier"
mid=0123456789abcdef0123456789abcdef
gid=fedcba9876543210fedcba9876543210
seqs=$(api a POST "/v1/barriers/$id/mark" "{\"marker_id\": \"$mid\", \"group_id\": \"$gid\", \"label\": \"cg\"}")
api a POST "/v1/barriers/$id/release" >/dev/null
wait "$writer" || fail "writer after the barrier"
writer=
[[ $(wc -l <"$work/held.log") -eq 20 ]] || fail "writes not answered after release"
for v in disk1 disk2; do
  s=$(echo "$seqs" | json "j['seqs']['$v']")
  wait_acked "$s" "$v"
  api b GET "/v1/replicas/$v/points?kind=group-consistent" | json "j['points'][0]['seq']" | grep -qx "$s" ||
    fail "group marker missing on $v at the target"
done
id=$(api a POST /v1/barriers '{"volumes": ["disk2"], "timeout_ms": 200}' | json 'j["id"]')
sleep 0.6
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
       --data "{\"marker_id\": \"$mid\", \"group_id\": \"$gid\"}" "http://127.0.0.1:${api_port[a]}/v1/barriers/$id/mark")
[[ $code == 404 ]] || fail "an expired barrier could still be marked (HTTP $code)"
[[ $(events_with "not released in time") -ge 1 ]] || fail "no event for the expired barrier"
echo "barrier: answers held, one group marker on both volumes, expiry released and reported"

# 4. Pending log over its cap while the target is down: resync of the changed blocks.
truncate -s 160M "$work/disk3.img"
api a POST /v1/volumes "{\"name\": \"disk3\", \"disk\": \"$work/disk3.img\"}" >/dev/null
api a POST /v1/volumes/disk3/protect "{\"target\": \"127.0.0.1:${link_port[b]}\", \"pending_cap_bytes\": 67108864}" >/dev/null
replica_ready disk3
before=$(mark before-outage disk3)
wait_acked "$before" disk3
kill9_node b
fio --name=fill --ioengine=nbd --uri="$(uri disk3 a)" --rw=write --bs=1m --iodepth=4 --size=150m \
    --randrepeat=0 --buffer_compress_percentage=0 >"$work/fill.log" 2>&1 || fail "fio fill: $(cat "$work/fill.log")"
for _ in $(seq 200); do
  [[ $(events_with "over its cap") -ge 1 ]] && break
  sleep 0.05
done
[[ $(events_with "over its cap") -ge 1 ]] || fail "the pending log was not dropped: $(api a GET /v1/status)"
pending=$(api a GET /v1/status | json "[v for v in j['volumes'] if v['name']=='disk3'][0]['link']['pending_bytes']")
((pending < 150 * 1024 * 1024)) || fail "the pending log still holds $pending bytes after the drop"
start_node b
seq=$(mark after-outage disk3)
for _ in $(seq 1200); do
  st=$(api a GET /v1/status | json "json.dumps([v for v in j['volumes'] if v['name']=='disk3'][0]['link'])")
  done_=$(echo "$st" | json "j['acked_seq'] >= $seq and j['resync']['state'] == 'none' and j['resync']['dirty_bytes'] == 0")
  [[ $done_ == True ]] && break
  sleep 0.05
done
[[ $done_ == True ]] || fail "the resync did not finish: $st"
seq=$(mark after-resync disk3)
wait_acked "$seq" disk3
api b POST /v1/replicas/disk3/views "{\"point\": \"$seq\"}" >/dev/null
qemu-img compare -f raw -F raw "$(uri disk3 a)" "$(uri "disk3@$seq" b)" >"$work/compare.log" 2>&1 ||
  fail "after the resync the target differs from the source: $(cat "$work/compare.log")"
api b GET /v1/replicas/disk3/points | json "[p['seq'] for p in j['points']]" | grep -q "$before" ||
  fail "the point taken before the outage is gone"
echo "overflow: pending log dropped at its cap, changed blocks resynced, target equals source, older point kept"

# 5. Scan capture of a disk written behind the node's back.
truncate -s 64M "$work/scan0.img"
dd if=/dev/urandom of="$work/scan0.img" bs=1M count=6 seek=3 conv=notrunc status=none
api a POST /v1/volumes "{\"name\": \"scan0\", \"disk\": \"$work/scan0.img\", \"capture\": \"scan\", \"scan_interval_ms\": 3600000}" >/dev/null
api a POST /v1/volumes/scan0/protect "{\"target\": \"127.0.0.1:${link_port[b]}\"}" >/dev/null
replica_ready scan0
dd if=/dev/urandom of="$work/scan0.img" bs=1M count=1 seek=40 conv=notrunc status=none
cycle=$(api a POST /v1/volumes/scan0/scan)
seq=$(echo "$cycle" | json 'j["seq"]')
changed=$(echo "$cycle" | json 'j["changed_chunks"]')
[[ $changed -eq 16 ]] || fail "a 1 MiB change should be 16 chunks of 64 KiB, the cycle sent $changed: $cycle"
wait_acked "$seq" scan0
qemu-img compare -f raw -F raw "$work/scan0.img" "$(uri "scan0@$seq" b)" >"$work/compare.log" 2>&1 ||
  fail "scan capture: the target differs from the disk: $(cat "$work/compare.log")"
if qemu-img info "$(uri scan0 a)" >/dev/null 2>&1; then fail "a scan volume must not have an NBD export"; fi
echo "scan capture: first cycle synced the disk, the next sent only the 16 changed chunks; target equals disk"

# 6. Bad requests.
expect_http() {  # expect_http CODE TEXT METHOD PATH [BODY]
  local want=$1 text=$2 method=$3 path=$4 body=${5:-}
  local out
  out=$(curl -sS -X "$method" -H "Authorization: Bearer $token" ${body:+--data "$body"} -w '\n%{http_code}' \
        "http://127.0.0.1:${api_port[a]}$path")
  [[ ${out##*$'\n'} == "$want" ]] || fail "$method $path: expected HTTP $want, got: $out"
  [[ $out == *"$text"* ]] || fail "$method $path: expected '$text' in: $out"
}
expect_http 404 "no capture volume 'nope'" POST /v1/volumes/nope/markers '{}'
expect_http 400 "mode 'fast'" POST /v1/volumes/disk2/protect "{\"target\": \"127.0.0.1:1\", \"mode\": \"fast\"}"
expect_http 409 "already protected" POST /v1/volumes/disk2/protect "{\"target\": \"127.0.0.1:1\"}"
expect_http 400 "not JSON" POST /v1/volumes '{'
expect_http 400 "volume name" POST /v1/volumes "{\"name\": \"a/b\", \"disk\": \"$work/x.img\"}"
expect_http 409 "stop its link first" DELETE /v1/volumes/disk2
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${api_port[a]}/v1/status")
[[ $code == 401 ]] || fail "a request without the token got HTTP $code"
echo "errors: clear messages and codes"
echo "node features: ok"
