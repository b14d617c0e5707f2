#!/usr/bin/env bash
# The control plane end to end: `ferry server` (SQLite) and two `ferry node` processes that
# enroll with one-time tokens and replicate over TLS. Every API call goes through a proxy that
# checks it against src/api/openapi.yaml. One machine with one disk goes around the whole
# cycle: protect → test failover → cleanup → failover (shut the source down) → commit →
# reprotect (delta only) → failback (planned, zero data loss) → commit → reprotect → disable,
# with the data written by fio's nbd engine through the NBD exports and verified (crc32c of
# every block, at its offset) after each failover and failback, forbidden transitions and bad
# input refused with the documented errors, and the server killed -9 inside the jobs.
set -euo pipefail
ferry=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
work=$(mktemp -d /tmp/ferry-control.XXXXXX)
NODES="a b"
source "$here/lib/nodes.sh"
source "$here/lib/server.sh"
start_server
start_api_proxy

# The data: fio's nbd engine writes a region of the disk as 64 KiB blocks that each carry a
# header with their offset and a crc32c of the block (--verify=crc32c), and reads it back;
# later the same job with --verify_only reads the region through another export (the test or
# the recovered disk) and fails on a block that is missing (zeros: bad magic), corrupt (crc) or
# at another offset than it was written for. fio does not tell its own blocks apart by job, so
# the regions never overlap and each is written by one job only (it may run again). Regions:
r1="0 4M" r2="4M 4M" r3="8M 1M" r4="9M 1M"
# fio_region write|verify URI OFFSET SIZE
fio_region() {
  local extra=()
  [[ $1 == verify ]] && extra=(--verify_only)
  timeout 120 fio --name=region --ioengine=nbd --uri="$2" --rw=write --bs=64k --iodepth=8 --offset="$3" \
    --size="$4" --verify=crc32c --verify_fatal=1 --verify_state_save=0 "${extra[@]}" >"$work/fio.out" 2>&1 &&
    grep -q "err= 0" "$work/fio.out"
}
# write_data URI REGION: writes REGION through URI (and reads it back).
write_data() {
  # shellcheck disable=SC2086 # a region is two words
  fio_region write "$1" $2 || fail "fio could not write $2 through $1: $(cat "$work/fio.out")"
}
# verify_data WHAT URI REGION...: every REGION reads back through URI as written.
verify_data() {
  local what=$1 uri=$2 r
  shift 2
  for r in "$@"; do
    # shellcheck disable=SC2086
    fio_region verify "$uri" $r || fail "$what: region $r is not what was written: $(cat "$work/fio.out")"
  done
}

echo "== inventory: sites, enrollment, nodes"
enroll_nodes
# A spent token is refused.
refused 401 Unauthenticated POST /nodes/register \
  "{\"token\": \"$etoken\", \"name\": \"node-x\", \"site\": \"recovery\", \"api_url\": \"http://127.0.0.1:1\", \"api_token\": \"\", \"link_address\": \"127.0.0.1:1\", \"nbd\": []}"

ok POST /policies '{"name": "fast", "rpo_threshold_seconds": 30, "crash_consistent_interval_seconds": 1, "app_consistent_interval_seconds": 0}' >/dev/null
disk="$work/web1-disk0.img"
ok POST /machines "{\"name\": \"web1\", \"site\": \"primary\", \"node\": \"node-a\", \"disks\": [{\"name\": \"disk0\", \"path\": \"$disk\", \"size\": 67108864}]}" >/dev/null

echo "== bad input is refused and changes nothing"
refused 400 InvalidArgument POST /machines '{"name": "web2", "site": "primary"}'
refused 400 InvalidArgument POST /sites '{"name": 7}'
refused 400 InvalidArgument POST /sites '{"name": "x", "colour": "red"}'
refused 400 InvalidArgument POST /sites 'not json'
refused 404 NotFound GET /items/item-999
refused 400 InvalidArgument GET '/items?state=Bogus'
refused 404 NotFound POST /items '{"machine": "nope", "target_site": "recovery"}'
head -c 2000000 /dev/zero | tr '\0' 'a' >"$work/big.json"
out=$(curl -sS -X POST -H "Authorization: Bearer $stoken" --data-binary @"$work/big.json" -w '\n%{http_code}' "$url/api/v1/sites")
[[ ${out##*$'\n'} == 413 ]] || fail "an oversized body got ${out##*$'\n'}, want 413"
out=$(curl -sS -w '\n%{http_code}' "$url/api/v1/items")
[[ ${out##*$'\n'} == 401 ]] || fail "a request without a token got ${out##*$'\n'}, want 401"
[[ $(ok GET /sites | json 'len(j["items"])') == 2 ]] || fail "a refused request created a site"
[[ $(ok GET /machines | json 'len(j["items"])') == 1 ]] || fail "a refused request created a machine"

echo "== protect"
job=$(ok POST /items '{"machine": "web1", "target_site": "recovery", "policy": "fast"}' | job_of)
wait_job "$job"
[[ $(item_state) == Protected ]] || fail "item is $(item_state) after enable"
src="nbd+unix:///web1.disk0?socket=$work/a.sock"
write_data "$src" "$r1"

echo "== forbidden transitions"
refused 409 InvalidState POST /items/item-1/commit '{}'
refused 409 InvalidState POST /items/item-1/reprotect '{}'
refused 409 InvalidState POST /items/item-1/change-recovery-point '{"point": "latest"}'
refused 400 InvalidArgument POST /items/item-1/failover '{"point": "yesterday"}'
# (straight to the server: the proxy would rightly call this route undocumented)
url=http://127.0.0.1:$server_port refused 404 NotFound POST /items/item-1/explode '{}'

echo "== test failover and cleanup"
sleep 2  # a crash-consistent point after the write
job=$(ok POST /items/item-1/test-failover '{"point": "latest"}' | job_of)
wait_job "$job"
[[ $(item_state) == TestFailover ]] || fail "item is $(item_state) after test failover"
turi=$(ok GET /items/item-1 | json 'list(j["test_failover"]["uris"].values())[0]')
verify_data "the test failover's disk" "$turi" "$r1"
refused 409 InvalidState POST /items/item-1/failover '{}'
job=$(ok POST /items/item-1/cleanup-test-failover '{"notes": "drill ok"}' | job_of)
wait_job "$job"
[[ $(item_state) == Protected ]] || fail "item is $(item_state) after cleanup"
[[ $(ok GET /items/item-1 | json 'j["last_test_failover"]["notes"]') == "drill ok" ]] || fail "last test not recorded"
[[ $(ok GET '/items/item-1/recovery-points?limit=5' | json 'len(j["items"])') -ge 1 ]] ||
  fail "no recovery points listed: $(ok GET /items/item-1/recovery-points)"

# crashing_job TYPE STEPS METHOD PATH BODY: runs an operation with the server killed -9 at the
# start and at the end of every step of its job (crash points, base/crash_point.h); each time
# the server is restarted and the job must go on from where it was, and finish.
crashing_job() {
  local type=$1 steps=$2 method=$3 path=$4 body=$5 points=() p fired job="" crashes=0 state
  for p in $steps; do points+=("job.$type.$p" "job.$type.$p.done"); done
  stop_server
  start_server "FERRY_CRASH_AT=$(IFS=,; echo "${points[*]}")"
  # Straight to the server: the proxy would report the answers cut by the kills.
  local direct=(-sS -H "Authorization: Bearer $stoken" -H 'Content-Type: application/json')
  job=$(curl "${direct[@]}" -X "$method" --data "$body" "http://127.0.0.1:$server_port/api/v1$path" 2>/dev/null |
        json 'j["job"]["id"]' 2>/dev/null || true)
  while :; do
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    fired=$(grep -o 'crash point [^ ]*' "$work/server.log" | tail -1 | cut -d' ' -f3 || true)
    [[ -n $fired ]] || fail "the server exited without a crash point"
    crashes=$((crashes + 1))
    local rest=()
    for p in "${points[@]}"; do [[ $p == "$fired" ]] || rest+=("$p"); done
    points=("${rest[@]}")
    sed -i "s/crash point $fired\$/(crashed at $fired)/" "$work/server.log"
    start_server "FERRY_CRASH_AT=$(IFS=,; echo "${points[*]}")"
    # The server lives until the job's next crash point, or for good once the job is done.
    state=""
    for _ in $(seq 600); do
      kill -0 "$server_pid" 2>/dev/null || break
      # The POST's answer may have been cut by the first kill: the job is the item's newest.
      # The restarted server may die at the next crash point before it answers: ask again.
      [[ -n $job ]] || job=$(curl "${direct[@]}" "http://127.0.0.1:$server_port/api/v1/jobs?item=item-1&limit=1" \
                               2>/dev/null | json 'j["items"][0]["id"]' 2>/dev/null || true)
      [[ -n $job ]] || { sleep 0.1; continue; }
      state=$(curl "${direct[@]}" "http://127.0.0.1:$server_port/api/v1/jobs/$job" 2>/dev/null | json 'j["state"]' 2>/dev/null || true)
      case $state in Succeeded | Failed | Cancelled) break ;; esac
      sleep 0.1
    done
    case $state in Succeeded | Failed | Cancelled) break ;; esac
  done
  wait_job "$job"
  echo "   $type: the server was killed -9 $crashes times inside $job (before and after every step); it finished"
  ((crashes == 2 * $(wc -w <<<"$steps"))) || fail "$crashes crash points fired for $type, want $((2 * $(wc -w <<<"$steps")))"
}

echo "== cancel: a failover waiting for an unreachable target, and a planned failover waiting for its last writes"
kill9_node b
job=$(ok POST /items/item-1/failover '{"point": "latest"}' | job_of)
for _ in $(seq 100); do
  [[ $(ok GET "/jobs/$job" | json 'j["steps"][0]["message"]') == *"trying again"* ]] && break
  sleep 0.1
done
ok POST "/jobs/$job/cancel" '{}' >/dev/null
wait_job "$job" Cancelled
[[ $(item_state) == Protected ]] || fail "item is $(item_state) after a cancelled failover"
start_node b
api a POST /v1/volumes/web1.disk0/link/pause >/dev/null
job=$(ok POST /items/item-1/failover '{"planned": true}' | job_of)
for _ in $(seq 100); do
  [[ $(ok GET "/jobs/$job" | json '[s["state"] for s in j["steps"] if s["name"]=="sync-final"][0]') == InProgress ]] && break
  sleep 0.1
done
ok POST "/jobs/$job/cancel" '{}' >/dev/null
wait_job "$job" Cancelled
[[ $(item_state) == Protected ]] || fail "item is $(item_state) after a cancelled planned failover"
# Every undo step ran, among them these, in this order (the workflow may have more).
[[ $(ok GET "/jobs/$job" | json '(lambda u, want: all(s["state"] == "Succeeded" for s in u) and
     [s["name"] for s in u if s["name"] in want] == want)([s for s in j["steps"] if s["phase"] == "undo"],
     ["discard-overlays", "unfence-source", "resume-replication", "finish-undo"])') == True ]] ||
  fail "undo steps: $(ok GET "/jobs/$job")"
write_data "$src" "$r1"  # the source takes writes again
seq=$(api a POST /v1/volumes/web1.disk0/markers '{"label": "after-cancel"}' | json 'j["seq"]')
for _ in $(seq 300); do
  acked=$(api a GET /v1/status | json "[v for v in j['volumes'] if v['name']=='web1.disk0'][0]['link']['acked_seq']")
  ((acked >= seq)) && break
  sleep 0.1
done
((acked >= seq)) || fail "replication did not resume after the cancelled failover"
# The policy's retention (24 h by default) reached the target with the link.
[[ $(api b GET /v1/status | json "[r['retention']['window_seconds'] == 86400 and r['retention']['said_by_source']
     for r in j['replicas'] if r['name']=='web1.disk0'][0]") == True ]] ||
  fail "the policy's retention did not reach the target: $(api b GET /v1/status)"

echo "== resync: a forced digest resync finds and repairs a damaged replica, sending only what differs"
vol=web1.disk0
tgt_at() { echo "nbd+unix:///$vol@$1?socket=$work/b.sock"; }
job=$(ok POST /items/item-1/resync '{}' | job_of)
wait_job "$job"
verify_msg() { ok GET "/jobs/$1" | json '[s for s in j["steps"] if s["name"] == "verify"][0]["message"]'; }
[[ $(verify_msg "$job") == "disk0: no difference" ]] || fail "resync of a healthy replica: $(ok GET "/jobs/$job")"
# A pattern at 20 MiB travels as a record; then the target's replica is damaged behind the
# node's back: blocks of its base, and one byte of that record in its journal.
timeout 20 qemu-io -f raw -c 'write -P 0xab 20M 64k' "$src" >/dev/null || fail "qemu-io write at the source"
m=$(mark before-damage "$vol")
wait_acked "$m" "$vol"
bases=$(find "$work/b-data" -name base.img)
[[ $(wc -l <<<"$bases") == 1 && -f $bases ]] || fail "want one replica on node b, found: $bases"
rdir=$(dirname "$bases")
# damage MIB [RECORD]: 4 KiB of the base at MIB MiB, and with RECORD one byte of the record.
damage() {
  "$py" - "$rdir" "$1" "${2:-}" <<'PY' || fail "could not damage the replica"
import os, sys
d, mib, record = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(os.path.join(d, "base.img"), "r+b") as f:
    f.seek(mib << 20); f.write(os.urandom(4096))
if not record: sys.exit(0)
for name in sorted(os.listdir(os.path.join(d, "journal"))):
    p = os.path.join(d, "journal", name)
    data = open(p, "rb").read()
    at = data.find(b"\xab" * 65536)
    if at < 0: continue
    with open(p, "r+b") as f:
        f.seek(at + 100); f.write(b"\x5a")
    sys.exit(0)
sys.exit("the record's payload was not found in the journal")
PY
  local m
  m=$(mark damaged "$vol")
  wait_acked "$m" "$vol"
  if qemu-img compare -f raw -F raw "$src" "$(tgt_at "$m")" >/dev/null 2>&1; then
    fail "the damaged replica still compares equal: the damage did not take"
  fi
}
# target_equals_source: a marker after everything, and the target's view there equals the source.
target_equals_source() {
  local m
  m=$(mark check "$vol")
  wait_acked "$m" "$vol"
  qemu-img compare -f raw -F raw "$src" "$(tgt_at "$m")" >"$work/compare.log" 2>&1 ||
    fail "$1: the target differs from the source: $(cat "$work/compare.log")"
}
# resync_with_node_crash POINT: node a is killed -9 at POINT inside the verify; restarted, it
# goes on with the verify from what it saved, and the job finishes.
resync_with_node_crash() {
  kill9_node a
  FERRY_CRASH_AT=$1 start_node a
  job=$(ok POST /items/item-1/resync '{}' | job_of)
  for _ in $(seq 600); do
    kill -0 "${pid[a]}" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "${pid[a]}" 2>/dev/null && fail "node a did not reach crash point $1: $(ok GET "/jobs/$job")"
  wait "${pid[a]}" 2>/dev/null || true
  unset "pid[a]"
  grep -q "crash point $1" "$work/a.log" || fail "node a died, but not at $1"
  start_node a
  wait_job "$job"
  echo "   node a killed -9 at $1 and restarted: $(verify_msg "$job")"
  target_equals_source "after a resync with node a killed at $1"
}
damage 40 record
resync_with_node_crash link.verify.compared
[[ $(verify_msg "$job") == "disk0: 8 KiB differed and were resynced (consistent from seq "* ]] ||
  fail "resync of the damaged replica (base block and journal record): $(ok GET "/jobs/$job")"
damage 44
resync_with_node_crash link.verify.rewriting
[[ $(verify_msg "$job") == "disk0: 4 KiB differed and were resynced (consistent from seq "* ]] ||
  fail "resync of the damaged replica (base block): $(ok GET "/jobs/$job")"

# A paused link cannot be verified: the job fails naming the link; resumed, a retry finishes.
damage 48
api a POST "/v1/volumes/$vol/link/pause" >/dev/null
job=$(ok POST /items/item-1/resync '{}' | job_of)
wait_job "$job" Failed
[[ $(ok GET "/jobs/$job" | json 'j["error"]["message"]') == *"link of disk disk0 is paused"* ]] ||
  fail "resync of a paused link: $(ok GET "/jobs/$job")"
api a POST "/v1/volumes/$vol/link/resume" >/dev/null
crashing_job resync "check-links verify finish" POST "/jobs/$job/retry" '{}'
[[ $(verify_msg "$job") == "disk0: 4 KiB differed and were resynced (consistent from seq "* ]] ||
  fail "resync of the damaged replica: $(ok GET "/jobs/$job")"
echo "   $(verify_msg "$job")"
[[ $(item_state) == Protected && $(ok GET /items/item-1 | json 'j["allowed_operations"] != []') == True ]] ||
  fail "the item is not Protected and idle after the resync: $(ok GET /items/item-1)"
target_equals_source "after the resync"

echo "== failover with --shutdown-source; the server is killed -9 at every step"
write_data "$src" "$r2"
crashing_job failover "preflight power-off-source shutdown-source sync-final pause-replication resolve-point create-overlays launch boot finish" \
  POST /items/item-1/failover '{"point": "latest", "shutdown_source": true}'
[[ $(item_state) == FailedOver ]] || fail "item is $(item_state) after failover"
if fio_region write "$src" 12M 64k; then fail "the shut-down source took a write"; fi
furi=$(ok GET /items/item-1 | json 'list(j["failover"]["uris"].values())[0]')
verify_data "the recovered disk after the failover" "$furi" "$r1" "$r2"

echo "== commit, then the recovered machine writes, then reprotect (delta only)"
job=$(ok POST /items/item-1/commit '{}' | job_of)
wait_job "$job"
[[ $(item_state) == Committed ]] || fail "item is $(item_state) after commit"
write_data "$furi" "$r3"  # the recovered machine writes
crashing_job reprotect "preflight promote prepare-target swap protect sync finish" POST /items/item-1/reprotect '{}'
job=$(ok GET '/jobs?item=item-1&limit=1' | json 'j["items"][0]["id"]')
[[ $(item_state) == Protected ]] || fail "item is $(item_state) after reprotect"
[[ $(ok GET /items/item-1 | json 'j["direction"]') == reverse ]] || fail "direction not reversed"
wire=$(ok GET "/jobs/$job" | json '[s for s in j["steps"] if s["name"]=="sync"][0]["message"]')
echo "   reprotect sync: $wire"
sent=$(sed -E 's/.*sent ([0-9]+) bytes on the wire.*/\1/' <<<"$wire")
((sent < 16 * 1024 * 1024)) || fail "reprotect sent $sent bytes for a 64 MiB disk with 1 MiB changed: not delta-only"
[[ $wire == *"by known-changes"* && $wire != *"by digests"* ]] ||
  fail "the reprotect did not sync by the known changes (the old disk's volume seeds the replica): $wire"

echo "== failback (planned, zero data loss), commit, reprotect forward"
write_data "$furi" "$r4"
crashing_job failover "preflight power-off-source shutdown-source sync-final pause-replication resolve-point create-overlays launch boot finish" \
  POST /items/item-1/failover '{"planned": true}'
[[ $(ok GET /items/item-1 | json 'j["active_site"]') == primary ]] || fail "failback did not return to primary"
buri=$(ok GET /items/item-1 | json 'list(j["failover"]["uris"].values())[0]')
verify_data "the disk at the home site after the failback" "$buri" "$r1" "$r2" "$r3" "$r4"
crashing_job commit "stop-replication commit wait-commit finish" POST /items/item-1/commit '{}'

job=$(ok POST /items/item-1/reprotect '{}' | job_of)
wait_job "$job"
[[ $(ok GET /items/item-1 | json 'j["direction"] + " " + j["state"]') == "forward Protected" ]] ||
  fail "not protected forward again: $(ok GET /items/item-1)"
wire=$(ok GET "/jobs/$job" | json '[s for s in j["steps"] if s["name"]=="sync"][0]["message"]')
echo "   reprotect forward sync: $wire"
[[ $wire == *"by known-changes"* ]] || fail "the reprotect after the failback did not sync by the known changes: $wire"

echo "== disable"
job=$(ok DELETE /items/item-1 | job_of)
wait_job "$job"
[[ $(item_state) == Disabled ]] || fail "item is $(item_state) after disable"

echo "== the CLI: protect again, test failover, failover, commit, with exit codes"
export FERRY_SERVER=$url FERRY_TOKEN=$stoken FERRY_CONFIG=/dev/null
cli() { "$ferry" "$@" >"$work/cli.out" 2>&1; }
cli_rc() { local rc=0; cli "$@" || rc=$?; echo $rc; }
cli protect web1 --target-site recovery --policy fast --wait || fail "ferry protect: $(cat "$work/cli.out")"
item=$("$ferry" item list --output json | json '[i["id"] for i in j if i["state"] != "Disabled"][0]' 2>/dev/null ||
       "$ferry" item list --output json | json '[i["id"] for i in j["items"] if i["state"] != "Disabled"][0]')
[[ $(cli_rc commit "$item") == 4 ]] || fail "ferry commit on a protected item: want exit 4: $(cat "$work/cli.out")"
[[ $(cli_rc item show item-999) == 3 ]] || fail "ferry item show of an unknown item: want exit 3: $(cat "$work/cli.out")"
[[ $(FERRY_TOKEN=wrong cli_rc item list) == 7 ]] || fail "a wrong token: want exit 7: $(cat "$work/cli.out")"
# New data at the source, acknowledged by the target with a recovery point after it.
vol=$("$ferry" item show "$item" --output json | json 'j["disks"][0]["volume"]')
r5="16M 2M"
write_data "$(api a GET /v1/status | json "[v for v in j['volumes'] if v['name']=='$vol'][0]['uri']")" "$r5"
wait_acked "$(mark cli "$vol")" "$vol"
cli resync "$item" --wait || fail "ferry resync: $(cat "$work/cli.out")"
[[ $(cat "$work/cli.out") == *"resync what differs: Succeeded"*"disk0: no difference"* ]] ||
  fail "ferry resync --wait does not say what it found: $(cat "$work/cli.out")"
cli test-failover "$item" --point latest --wait || fail "ferry test-failover: $(cat "$work/cli.out")"
verify_data "the CLI's test failover" "$("$ferry" item show "$item" --output json | json 'j["test_failover"]["uris"]["'"$vol"'"]')" "$r5"
cli cleanup-test-failover "$item" --notes cli --wait || fail "ferry cleanup-test-failover: $(cat "$work/cli.out")"
cli failover "$item" --point latest --wait || fail "ferry failover: $(cat "$work/cli.out")"
verify_data "the CLI's failover" "$("$ferry" item show "$item" --output json | json 'j["disks"][0]["uri"]')" "$r5"
cli commit "$item" --wait || fail "ferry commit: $(cat "$work/cli.out")"
[[ $("$ferry" item show "$item" --output json | json 'j["state"]') == Committed ]] || fail "ferry item show: not Committed"
cli job list --item "$item" || fail "ferry job list: $(cat "$work/cli.out")"
grep -q commit "$work/cli.out" || fail "ferry job list does not show the commit: $(cat "$work/cli.out")"

echo "== every exchange matched the OpenAPI document"
check_api_proxy
echo "control plane: OK"
