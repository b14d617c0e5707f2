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
#   6. bad requests get clear errors;
#   7. promote after a failover (overlay, commit): a writer connected to the overlay's export
#      keeps writing through it, now into the new capture volume's splitter; reprotected
#      toward the old source node (a replica seeded from the disk left there), the writes
#      reach it and its point equals the volume;
#   8. kill -9 of the target node as the promote request is sent, as soon as the volume's
#      directory appears (its commit point) and right after it answered: after the restart
#      the promote is either undone or done, promote again succeeds, the overlay's export
#      name serves the volume, and the disk equals the committed overlay (the crash after
#      each single step is src/node/promotion_test.cc);
#   9. fence: writes fail (EPERM) and reads work, the fence marker reaches the target, the
#      fence survives a restart, unfence allows writes again;
#  10. DELETE of a replica refuses overlays in use unless forced; a source that reconnects
#      afterwards gets a fresh replica, and the node keeps running;
#  11. reprotect with known changes: the replica prepared from the old source's volume gets
#      every block changed since the failover point, wherever it changed (the old source
#      after the point, replicated or not; the overlay; the promoted volume), and nothing
#      else; it equals the volume;
#  12. a write an overlay answered but had not flushed survives kill -9 of its node.
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
events_with() { api a GET /v1/events | json "sum(1 for e in j['events'] if '$1' in e['message'])"; }
vol_link() { api a GET /v1/status | json "json.dumps([v for v in j['volumes'] if v['name']=='$1'][0]['link'])"; }

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
  \"thaw_command\": \"echo thaw \$FERRY_VOLUME >>$hooklog\", \"hook_timeout_ms\": 2000, \"compression\": \"lz4\"}" >/dev/null
# A point before the end of the initial sync is not consistent and not listed at the target:
# the marker is taken once the sync finished (on a loaded machine it can take seconds).
replica_ready disk1
[[ $(vol_link disk1 | json "j['codec']") == lz4 ]] || fail "disk1's link does not compress with lz4: $(vol_link disk1)"
seq=$(api a POST /v1/volumes/disk1/markers '{"kind": "app-consistent", "label": "nightly"}' | json 'j["seq"]')
[[ $(cat "$hooklog") == $'freeze disk1\nthaw disk1' ]] || fail "hooks did not run freeze then thaw: $(cat "$hooklog")"
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
api a POST /v1/volumes/disk2/protect "{\"target\": \"127.0.0.1:${link_port[b]}\", \"compression\": \"none\"}" >/dev/null
replica_ready disk2
# The compression setting: disk0 has the default, disk2 asked for none (disk1 for lz4, above).
codecs=$(api a GET /v1/status | json "' '.join(v['link']['codec'] for v in j['volumes'] if v['name'] in ('disk0', 'disk2'))")
[[ $codecs == "zstd none" ]] || fail "links compress with '$codecs', expected 'zstd none'"
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

# 4b. Verify (a forced digest resync) of that link: nothing differs; asking again is harmless.
out=$(api a POST /v1/volumes/disk3/link/resync '{"id": "check-1"}')
[[ $(echo "$out" | json 'j["id"]') == check-1 ]] || fail "verify: $out"
for _ in $(seq 600); do
  st=$(vol_link disk3)
  [[ $(echo "$st" | json 'j["verify"]["state"]') == done ]] && break
  sleep 0.05
done
[[ $(echo "$st" | json '(j["verify"]["state"], j["verify"]["differing_bytes"], j["verify"]["compared_bytes"])') == \
   "('done', 0, 167772160)" ]] || fail "verify of a healthy link: $st"
[[ $(api a POST /v1/volumes/disk3/link/resync '{"id": "check-1"}' | json 'j["state"]') == done ]] ||
  fail "asking again for a finished verify started another"
for _ in $(seq 100); do
  [[ $(events_with "verify check-1: the target equals the source") -ge 1 ]] && break
  sleep 0.05
done
[[ $(events_with "verify check-1: the target equals the source") -ge 1 ]] || fail "no event for the verify: $(api a GET /v1/events)"
echo "verify: the whole disk (after the resync above) compared by digests, nothing differed, reported as an event"

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
expect_http() { expect_on a "$@"; }  # expect_http CODE TEXT METHOD PATH [BODY]
expect_http 404 "no capture volume 'nope'" POST /v1/volumes/nope/markers '{}'
expect_http 400 "mode 'fast'" POST /v1/volumes/disk2/protect "{\"target\": \"127.0.0.1:1\", \"mode\": \"fast\"}"
expect_http 400 "compression 'gzip': use zstd" POST /v1/volumes/disk2/protect "{\"target\": \"127.0.0.1:1\", \"compression\": \"gzip\"}"
expect_http 409 "already protected" POST /v1/volumes/disk2/protect "{\"target\": \"127.0.0.1:1\"}"
expect_http 400 "not JSON" POST /v1/volumes '{'
expect_http 400 "volume name" POST /v1/volumes "{\"name\": \"a/b\", \"disk\": \"$work/x.img\"}"
expect_http 409 "stop its link first" DELETE /v1/volumes/disk2
expect_http 400 "field 'id'" POST /v1/volumes/disk2/link/resync '{}'
expect_http 404 "no capture volume 'nope'" POST /v1/volumes/nope/link/resync '{"id": "v"}'
expect_http 409 "scan capture" POST /v1/volumes/scan0/link/resync '{"id": "v"}'
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${api_port[a]}/v1/status")
[[ $code == 401 ]] || fail "a request without the token got HTTP $code"
echo "errors: clear messages and codes"

# Helpers for the failover cycle: FIELD of volume or replica NAME in node N's status.
vol_field() { api "$1" GET /v1/status | json "[v for v in j['volumes'] if v['name']=='$2'][0]$3"; }
rep_field() { api "$1" GET /v1/status | json "[r for r in j['replicas'] if r['name']=='$2'][0]$3"; }
commit_done() {  # commit_done NODE REPLICA
  for _ in $(seq 400); do
    [[ $(rep_field "$1" "$2" "['commit']['state']") == done ]] && return 0
    sleep 0.05
  done
  fail "the commit of $2 did not finish: $(rep_field "$1" "$2" "['commit']")"
}
wait_acked_on() {  # wait_acked_on NODE VOLUME SEQ: the node's link of VOLUME has SEQ at its target
  local acked=0
  for _ in $(seq 1200); do
    acked=$(vol_field "$1" "$2" "['link']['acked_seq']")
    ((acked >= $3)) && return 0
    sleep 0.05
  done
  fail "seq $3 of $2 on node $1 not acknowledged within 60 s (acked $acked)"
}
# failed_over VOLUME SIZE: VOLUME on node a with data, replicated to b, its link stopped (the
# source is gone), an overlay "fo" on b at the last marker; prints that marker's seq.
failed_over() {
  truncate -s "$2" "$work/$1.img"
  api a POST /v1/volumes "{\"name\": \"$1\", \"disk\": \"$work/$1.img\"}" >/dev/null
  api a POST "/v1/volumes/$1/protect" "{\"target\": \"127.0.0.1:${link_port[b]}\"}" >/dev/null
  replica_ready "$1"
  "$py" "$here/tools/numbered_writer.py" "$(uri "$1" a)" 1024 21 "$work/$1-src.log" 200 || fail "writer on $1"
  local seq
  seq=$(mark before-failover "$1")
  wait_acked "$seq" "$1"
  api a POST "/v1/volumes/$1/link/stop" >/dev/null
  api b POST "/v1/replicas/$1/overlays" "{\"name\": \"fo\", \"point\": \"$seq\"}" >/dev/null
  echo "$seq"
}

# 7. Promote after a failover: the machine writes through the overlay all along.
failover_started=$SECONDS
failed_over pv0 32M >/dev/null
expect_on b 409 "commit an overlay first" POST /v1/replicas/pv0/promote '{"volume": "pv0"}'
: >"$work/fo-writes.log"
"$py" "$here/tools/numbered_writer.py" "$(uri pv0/overlay/fo b)" 1024 22 "$work/fo-writes.log" 2>"$work/fo-writer.err" &
writer=$!
sleep 0.3
api b POST /v1/replicas/pv0/overlays/fo/commit >/dev/null
commit_done b pv0
[[ $(rep_field b pv0 "['overlays'][0]['state']") == committed ]] || fail "overlay not committed: $(rep_field b pv0 "")"
old_id=$(vol_field a pv0 "['volume_id']")
before=$(wc -l <"$work/fo-writes.log")
promoted=$(api b POST /v1/replicas/pv0/promote '{"volume": "pv0"}')
new_id=$(echo "$promoted" | json 'j["volume_id"]')
[[ $new_id != "$old_id" ]] || fail "the promoted volume kept the old volume id"
echo "$promoted" | json 'j["aliases"]' | grep -q "pv0/overlay/fo" || fail "no alias: $promoted"
sleep 0.5
kill -0 "$writer" 2>/dev/null || fail "the overlay's writer stopped at the promote: $(cat "$work/fo-writer.err")"
after=$(wc -l <"$work/fo-writes.log")
((after > before)) || fail "no write answered through the overlay's export after the promote"
logged=$(vol_field b pv0 "['log_last_seq']")
((logged > 0)) || fail "writes after the promote were not captured by the volume's splitter"
[[ -z $(api b GET /v1/status | json "[r['name'] for r in j['replicas'] if r['name']=='pv0'] or ''") ]] ||
  fail "the replica is still there after the promote"
# Reprotect toward node a: the disk left there seeds the replica.
api a DELETE /v1/volumes/pv0 >/dev/null
st=$(api b GET /v1/status | json "json.dumps([v for v in j['volumes'] if v['name']=='pv0'][0])")
api a POST /v1/replicas "$(echo "$st" | json "json.dumps({'name': 'pv0', 'volume_id': j['volume_id'],
  'history_id': j['history_id'], 'size': j['size'], 'first_seq': j['log_last_seq'] + 1, 'seed': '$work/pv0.img'})")" >/dev/null
api b POST /v1/volumes/pv0/protect "{\"target\": \"127.0.0.1:${link_port[a]}\"}" >/dev/null
replica_ready pv0 a
[[ $(vol_field b pv0 "['link']['initial_sync']['method']") == digests ]] ||
  fail "a replica seeded from a bare file did not compare digests: $(vol_field b pv0 "['link']['initial_sync']")"
sleep 0.3
kill -TERM "$writer"; wait "$writer" 2>/dev/null || true
writer=
seq=$(api b POST /v1/volumes/pv0/markers '{"label": "reprotected"}' | json 'j["seq"]')
wait_acked_on b pv0 "$seq"
api a POST /v1/replicas/pv0/views "{\"point\": \"$seq\"}" >/dev/null
"$py" "$here/tools/numbered_writer.py" check "$(uri "pv0@$seq" a)" 1024 22 "$work/fo-writes.log" >"$work/check.log" 2>&1 ||
  fail "writes through the overlay (before and after the promote) missing at the new target: $(cat "$work/check.log")"
qemu-img compare -f raw -F raw "$(uri pv0 b)" "$(uri "pv0@$seq" a)" >"$work/compare.log" 2>&1 ||
  fail "the reprotected replica differs from the promoted volume: $(cat "$work/compare.log")"
echo "promote: $before writes before, $((after - before))+ after through the same connection, captured;" \
     "reprotected to node a, which holds all $(wc -l <"$work/fo-writes.log") and equals the volume ($((SECONDS - failover_started)) s)"

# 8. kill -9 of node b during or right after a promote.
t=$SECONDS
for point in sent committed answered; do
  v=pk-$point
  failed_over "$v" 16M >/dev/null
  "$py" "$here/tools/numbered_writer.py" "$(uri "$v/overlay/fo" b)" 1024 23 "$work/$v-fo.log" 100 || fail "writer on the overlay"
  api b POST "/v1/replicas/$v/overlays/fo/commit" >/dev/null
  commit_done b "$v"
  qemu-img convert -f raw -O raw "$(uri "$v/overlay/fo" b)" "$work/$v-expected.img" || fail "reading the overlay"
  curl -sS -X POST -H "Authorization: Bearer $token" --data "{\"volume\": \"$v\", \"disk\": \"$work/$v-promoted.img\"}" \
    "http://127.0.0.1:${api_port[b]}/v1/replicas/$v/promote" >/dev/null 2>&1 &
  promoting=$!
  case $point in
    committed)  # no sleep: the promote takes milliseconds
      for _ in $(seq 100000); do [[ -e $work/b-data/volumes/$v ]] && break; done ;;
    answered) wait "$promoting" || true ;;
  esac
  kill9_node b
  wait "$promoting" 2>/dev/null || true
  log_lines=$(wc -l <"$work/b.log")
  start_node b
  recovered=$(tail -n +"$((log_lines + 1))" "$work/b.log" | grep -o 'interrupted [a-z]* its commit point: [a-z]*' || true)
  if api b GET /v1/status | json "any(v['name']=='$v' for v in j['volumes'])" | grep -q True; then
    state=after
  elif [[ $(rep_field b "$v" "['commit']['state']") == done ]]; then
    state=before
  else
    fail "after kill -9 during promote, neither the volume nor the committed replica of $v: $(api b GET /v1/status)"
  fi
  again=$(api b POST "/v1/replicas/$v/promote" "{\"volume\": \"$v\", \"disk\": \"$work/$v-promoted.img\"}")
  [[ $(echo "$again" | json 'j["name"]') == "$v" ]] || fail "promote after the restart: $again"
  qemu-img compare -f raw -F raw "$work/$v-expected.img" "$(uri "$v/overlay/fo" b)" >"$work/compare.log" 2>&1 ||
    fail "the overlay's name does not serve the committed disk after kill -9 ($state): $(cat "$work/compare.log")"
  cmp "$work/$v-expected.img" "$work/$v-promoted.img" || fail "the promoted disk differs from the committed overlay"
  qemu-io -f raw -c 'write -P 0x5a 0 4k' "$(uri "$v/overlay/fo" b)" >"$work/qemu-io.log" 2>&1 ||
    fail "writing through the alias: $(cat "$work/qemu-io.log")"
  ((${#pid[@]} == 2)) || fail "a node died"
  [[ $(vol_field b "$v" "['log_last_seq']") -ge 1 ]] || fail "a write through the alias was not captured"
  echo "promote with kill -9 at $point: found $state${recovered:+ (promote $recovered)}, promote again succeeded, alias serves the committed disk ($((SECONDS - t)) s)"
  t=$SECONDS
done

# 9. Fence.
t=$SECONDS
qemu-io -f raw -c 'write -P 0x11 0 64k' "$(uri disk2 a)" >"$work/qemu-io.log" 2>&1 || fail "write before the fence"
fenced=$(api a POST /v1/volumes/disk2/fence)
fseq=$(echo "$fenced" | json 'j["seq"]')
[[ $(echo "$fenced" | json 'j["volume"]') == disk2 ]] || fail "fence answered: $fenced"
qemu-io -f raw -c 'write -P 0x22 0 64k' "$(uri disk2 a)" >"$work/qemu-io.log" 2>&1 || true
grep -q 'Operation not permitted' "$work/qemu-io.log" || fail "a write to a fenced volume did not fail with EPERM: $(cat "$work/qemu-io.log")"
qemu-io -f raw -c 'read -P 0x11 0 64k' "$(uri disk2 a)" >"$work/qemu-io.log" 2>&1 || fail "read of a fenced volume"
grep -q 'read 65536/65536' "$work/qemu-io.log" || fail "read of a fenced volume: $(cat "$work/qemu-io.log")"
wait_acked "$fseq" disk2
api b GET "/v1/replicas/disk2/points?limit=5" | json "[p['label'] for p in j['points'] if p['seq']==$fseq]" | grep -q fence ||
  fail "the fence marker $fseq is not a point at the target"
fseq2=$(api a POST /v1/volumes/disk2/fence | json 'j["seq"]')
((fseq2 > fseq)) || fail "fencing again gave no new marker"
kill9_node a
start_node a
[[ $(vol_field a disk2 "['fenced']") == True ]] || fail "the fence did not survive a restart"
qemu-io -f raw -c 'write -P 0x22 0 64k' "$(uri disk2 a)" >"$work/qemu-io.log" 2>&1 || true
grep -q 'Operation not permitted' "$work/qemu-io.log" || fail "a restarted node accepted a write to a fenced volume"
api a POST /v1/volumes/disk2/unfence >/dev/null
qemu-io -f raw -c 'write -P 0x22 0 64k' -c 'read -P 0x22 0 64k' "$(uri disk2 a)" >"$work/qemu-io.log" 2>&1 &&
  ! grep -q 'failed' "$work/qemu-io.log" || fail "write after unfence: $(cat "$work/qemu-io.log")"
[[ $(vol_field a disk2 "['fenced']") == False ]] || fail "still fenced after unfence"
expect_on a 409 "scan-captured" POST /v1/volumes/scan0/fence "{}"
expect_on a 404 "no capture volume" POST /v1/volumes/nope/fence "{}"
echo "fence: writes refused with EPERM, reads work, marker $fseq at the target, survives restart, unfence writes again ($((SECONDS - t)) s)"

# 10. DELETE of replicas.
t=$SECONDS
api b POST /v1/replicas/disk1/overlays '{"name": "t1"}' >/dev/null
expect_on b 409 "t1 (active)" DELETE /v1/replicas/disk1
api b DELETE "/v1/replicas/disk1?force=true" >/dev/null
# disk1's link on node a still runs: it reconnects and gets a fresh replica (a new initial sync).
replica_ready disk1
[[ $(rep_field b disk1 "['overlays']") == "[]" ]] || fail "the fresh replica has the old overlays"
api a POST /v1/volumes/disk1/link/stop >/dev/null
api b DELETE /v1/replicas/disk1 >/dev/null
sleep 0.5
[[ $(api b GET /v1/status | json "sum(1 for r in j['replicas'] if r['name']=='disk1')") == 0 ]] ||
  fail "the replica came back although its source's link is stopped"
expect_on b 404 "no replica" DELETE /v1/replicas/disk1
((${#pid[@]} == 2)) && kill -0 "${pid[b]}" || fail "node b died"
echo "delete replica: refused with an active overlay, forced, recreated by the running link, gone once it stopped ($((SECONDS - t)) s)"

# 11. Reprotect with known changes: four kinds of change since the failover point, each in a
# place of its own, and the replica seeded from the old source's volume (seed_volume) must
# get every one of them without comparing digests:
#   X1 written at a after the point and replicated (in b's journal after the point),
#   X2 written at a after its link stopped (only in a's pending log),
#   X3 written through the failover overlay at b,
#   X4 written through the promoted volume's splitter before the replica was prepared,
#   X5 written at a after a prepare that failed (which must leave the volume as it was).
t=$SECONDS
truncate -s 160M "$work/kc.img"  # three windows of the sync: 0-64M, 64-128M, 128-160M
api a POST /v1/volumes "{\"name\": \"kc\", \"disk\": \"$work/kc.img\"}" >/dev/null
api a POST /v1/volumes/kc/protect "{\"target\": \"127.0.0.1:${link_port[b]}\"}" >/dev/null
replica_ready kc
qemu-io -f raw -c 'write -P 0x10 0 8M' -c 'write -P 0x11 16M 8M' "$(uri kc a)" >/dev/null || fail "qemu-io on kc"
p1=$(mark point kc)
qemu-io -f raw -c 'write -P 0x21 1M 128k' "$(uri kc a)" >/dev/null || fail "qemu-io X1"
wait_acked "$(mark after-point kc)" kc
api a POST /v1/volumes/kc/link/stop >/dev/null
qemu-io -f raw -c 'write -P 0x22 3M 64k' "$(uri kc a)" >/dev/null || fail "qemu-io X2"
api b POST /v1/replicas/kc/overlays "{\"name\": \"fo\", \"point\": \"$p1\"}" >/dev/null
qemu-io -f raw -c 'write -P 0x23 5124k 64k' -c 'write -P 0x26 20M 6M' -c 'write -P 0x2b 64M 4M' \
  "$(uri kc/overlay/fo b)" >/dev/null ||
  fail "qemu-io X3"
api b POST /v1/replicas/kc/overlays/fo/commit >/dev/null
commit_done b kc
api b POST /v1/replicas/kc/promote '{"volume": "kc"}' >/dev/null
[[ -e $work/b-data/volumes/kc/delta.map ]] || fail "the promote left no known changes (delta.map)"
# 18 MiB of records after X4 and one more, so that X4's segment (16 MiB, then sealed) is
# trimmed after the sync's first window: then only the delta.map saved at the first handshake
# still names X4 (in the last window) after the kill of b below.
qemu-io -f raw -c 'write -P 0x24 150M 32k' -c 'write -P 0x27 10M 6M' -c 'write -P 0x28 10M 6M' \
  -c 'write -P 0x29 10M 6M' -c 'write -P 0x2a 10M 4k' "$(uri kc b)" >/dev/null || fail "qemu-io X4"
st=$(api b GET /v1/status | json "json.dumps([v for v in j['volumes'] if v['name']=='kc'][0])")
expect_on a 400 "not the disk of seed_volume" POST /v1/replicas "$(echo "$st" | json "json.dumps({'name': 'kc',
  'volume_id': j['volume_id'], 'history_id': j['history_id'], 'size': j['size'], 'first_seq': j['log_last_seq'] + 1,
  'seed': '$work/other.img', 'seed_volume': 'kc'})")"
# A prepare that fails (pv0 names a replica on a already) leaves the volume as it was: there,
# not fenced.
expect_on a 409 "exists already" POST /v1/replicas "$(echo "$st" | json "json.dumps({'name': 'pv0',
  'volume_id': j['volume_id'], 'history_id': j['history_id'], 'size': j['size'], 'first_seq': j['log_last_seq'] + 1,
  'seed_volume': 'kc'})")"
[[ $(vol_field a kc "['fenced']") == False ]] || fail "a failed prepare left the seed volume fenced"
qemu-io -f raw -c 'write -P 0x25 9M 4k' "$(uri kc a)" >/dev/null || fail "a failed prepare left the seed volume unwritable"
prepared=$(api a POST /v1/replicas "$(echo "$st" | json "json.dumps({'name': 'kc', 'volume_id': j['volume_id'],
  'history_id': j['history_id'], 'size': j['size'], 'first_seq': j['log_last_seq'] + 1, 'seed_volume': 'kc'})")")
[[ $(echo "$prepared" | json "j['seed_changes']['bytes']") -ge $((64 << 10)) ]] ||
  fail "the seed's known changes miss what node a wrote after its link stopped: $prepared"
[[ -z $(api a GET /v1/status | json "[v['name'] for v in j['volumes'] if v['name']=='kc'] or ''") ]] ||
  fail "the seed volume is still there after the replica was prepared from it"
# Throttled to 2 MB/s (frames of up to 4 MiB, each waiting for the one before to be paid
# for) so that both nodes can be killed (-9) in the middle of the sync: each side's part of
# the known changes is on disk, and the sync goes on with them. b dies once its pending log
# was trimmed after the first window (12 MiB, about 6 s), while the second window's 4 MiB are
# paid for, before the last window (X4) is sent. The limit counts bytes on the wire, and
# these patterns compress to almost nothing: no compression, so they pay in full.
api b POST /v1/volumes/kc/protect "{\"target\": \"127.0.0.1:${link_port[a]}\", \"bytes_per_second\": 2000000,
  \"compression\": \"none\"}" >/dev/null
for _ in $(seq 300); do
  (($(vol_field b kc "['link']['pending_bytes']") < (16 << 20))) && break
  sleep 0.05
done
(($(vol_field b kc "['link']['pending_bytes']") < (16 << 20))) || fail "b's pending log was not trimmed during the sync"
[[ $(rep_field a kc "['initial_sync']['running']") == True ]] || fail "the throttled sync of kc ended before the kill"
kill9_node b
start_node b
sleep 0.8
[[ $(rep_field a kc "['initial_sync']['running']") == True ]] || fail "the throttled sync of kc ended before the kill of a"
kill9_node a
start_node a
api b PUT /v1/volumes/kc/link/rate '{"bytes_per_second": 0}' >/dev/null
replica_ready kc a
method=$(vol_field b kc "['link']['initial_sync']['method']")
[[ $method == known-changes ]] ||
  fail "the reprotect's sync used $method: $(vol_field b kc "['link']['initial_sync']")"
raw=$(vol_field b kc "['link']['raw_bytes']")
changed=$(((128 + 64 + 64 + 6144 + 4096 + 32 + 6144 + 4) << 10))
# The sessions the kills cut short resend what the target had not made durable (at most once
# more here); blocks outside the changes would show as more.
((raw < 2 * changed + (64 << 10))) || fail "the reprotect sent $raw bytes of records and blocks for $changed changed"
seq=$(api b POST /v1/volumes/kc/markers '{"label": "reprotected"}' | json 'j["seq"]')
wait_acked_on b kc "$seq"
api a POST /v1/replicas/kc/views "{\"point\": \"$seq\"}" >/dev/null
qemu-img compare -f raw -F raw "$(uri kc b)" "$(uri "kc@$seq" a)" >"$work/compare.log" 2>&1 ||
  fail "the replica synced with known changes differs from the volume: $(cat "$work/compare.log")"
# Both sides drop the changes once the initial sync is done: a later replica has another seed.
for _ in $(seq 100); do
  [[ ! -e $work/b-data/volumes/kc/delta.map ]] && break
  sleep 0.05
done
[[ ! -e $work/b-data/volumes/kc/delta.map ]] || fail "the source kept its known changes after the sync"
[[ -z $(find "$work/a-data" -name SEED-CHANGES) ]] || fail "the target kept the seed's changes after the sync"
echo "known changes: reprotect sent $raw bytes for $changed changed in five places, replica equals the volume ($((SECONDS - t)) s)"

# 12. A write an overlay answered, not yet flushed, survives kill -9 of its node: QEMU
# (reconnect-delay) sends the flush again to the restarted node, so the write must not be
# forgotten; and it is among the blocks the overlay knows it changed.
t=$SECONDS
failed_over ow0 16M >/dev/null
# The writer keeps its connection open (as a machine does), so nothing flushes the overlay
# when it disconnects before the kill.
"$py" - "$(uri ow0/overlay/fo b)" "$work/ow0.written" <<'PY' &
import nbd, sys, time
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b"U" * 4096, 91 * 4096)  # answered; no flush
open(sys.argv[2], "w").close()
time.sleep(60)
PY
ow_writer=$!
for _ in $(seq 200); do [[ -e $work/ow0.written ]] && break; sleep 0.05; done
[[ -e $work/ow0.written ]] || fail "the write to the overlay of ow0 was not answered"
kill9_node b
kill "$ow_writer" 2>/dev/null || true
wait "$ow_writer" 2>/dev/null || true
start_node b
got=$("$py" - "$(uri ow0/overlay/fo b)" <<'PY'
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.flush()
print(h.pread(4096, 91 * 4096) == b"U" * 4096)
PY
)
[[ $got == True ]] || fail "an answered write to an overlay was forgotten after kill -9 of its node and a flush"
[[ $(rep_field b ow0 "['overlays'][0]['changed_bytes']") -ge 4096 ]] ||
  fail "the overlay does not count the recovered write as changed: $(rep_field b ow0 "['overlays']")"
echo "overlay: an answered, unflushed write survived kill -9 of its node ($((SECONDS - t)) s)"

echo "(sections 7 to 12 took $((SECONDS - failover_started)) s)"
echo "node features: ok"
