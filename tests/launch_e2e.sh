#!/usr/bin/env bash
# Recovered machines really boot: `ferry server` and two nodes whose qemu launchers start the
# test guest (tests/guest, service mode: it reads the numbered records on its disk, then
# appends more, each durable before the next) from the disks Ferry exports.
#   0. The source machine runs at site primary from node a's splitter export (started here
#      with QEMU, as an operator would; Ferry knows its QMP socket to shut it down).
#   1. Test failover to latest-app-consistent while the source keeps writing: the test machine
#      boots in an isolated network with an unbroken prefix of records; cleanup removes it.
#   2. Failover to latest with shutdown-source: the recovered machine boots at site recovery
#      and finds every record the source synced before it powered off.
#   3. It writes more; commit; reprotect (delta only: the bytes sent are checked); failback
#      (planned): the machine boots at home and finds every record written at the recovery
#      site; commit; reprotect forward.
# On failure, the serial consoles of every machine are printed.
# Usage: launch_e2e.sh FERRY_BINARY. Prints the recovery time of each failover split into
# its steps (bench/RESULTS.md keeps the figures).
set -euo pipefail
ferry=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
for tool in qemu-system-x86_64 cpio curl; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (run tools/install-deps)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/ferry-launch.XXXXXX)
NODES="a b"
source "$here/lib/nodes.sh"
source "$here/lib/server.sh"
source "$here/lib/launch.sh"
launch_setup 67108864

echo "== the source machine"
# Bad run settings are refused with the field named.
refused 400 InvalidArgument POST /machines "{\"name\": \"vm2\", \"site\": \"primary\", \"node\": \"node-a\", \"disks\": [{\"name\": \"d\", \"path\": \"/x\", \"size\": 4096}], \"run\": {\"shutdown\": {\"qmp\": \"/a\", \"command\": \"b\"}}}"
refused 400 InvalidArgument POST /machines "{\"name\": \"vm2\", \"site\": \"primary\", \"node\": \"node-a\", \"disks\": [{\"name\": \"d\", \"path\": \"/x\", \"size\": 4096}], \"run\": {\"boot\": {\"kernel\": \"relative\"}}}"
# A physical server's power-off: a command its node runs, after adoption.
api a POST /v1/machines/adopt "{\"name\": \"phys1\", \"stop_command\": \"touch $work/phys1-off\"}" >/dev/null
api a POST /v1/machines/phys1/stop '{"graceful": true, "timeout_ms": 5000}' >/dev/null
for _ in $(seq 50); do [[ $(api a GET /v1/machines/phys1 | json 'j["state"]') == Stopped ]] && break; sleep 0.1; done
[[ -f $work/phys1-off ]] || fail "the adopted machine's stop command did not run"
[[ $(api a GET /v1/machines/phys1 | json 'j["state"]') == Stopped ]] || fail "the adopted machine is not Stopped"
api a DELETE /v1/machines/phys1 >/dev/null
# The recovered machine gets the item's IP address in its network.
job=$(ok PATCH /items/item-1 '{"ip_address": "10.0.2.50"}' | job_of)
wait_job "$job"
start_source
echo "source machine writing (record $(last_wrote "$work/source-console.log"))"

echo "== 1. test failover to latest-app-consistent while the source writes"
since=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
for _ in $(seq 300); do
  n=$(ok GET "/items/item-1/recovery-points?kind=app-consistent&after=$since" | json 'len(j["items"])')
  ((n > 0)) && break
  sleep 0.1
done
((n > 0)) || fail "no app-consistent point in 30 s: $(ok GET '/items/item-1/recovery-points?limit=5')"
at_test=$(last_wrote "$work/source-console.log")
job=$(ok POST /items/item-1/test-failover '{"point": "latest-app-consistent"}' | job_of)
wait_job "$job"
echo "test failover (seconds per step): $(job_steps "$job")"
[[ $(item_state) == TestFailover ]] || fail "item is $(item_state) after the test failover"
text=$(console test)
test_records=$(records_of "$text" "test machine")
((test_records >= 30)) || fail "the test machine found $test_records records, want >= 30 (the point is after them)"
echo "test machine: records 0..$((test_records - 1)) unbroken (the source had written $at_test when the test began)"
tpid=$(pgrep -f "$work/b-data/machines/vm1-test/" | head -1) || fail "no QEMU process of the test machine"
grep -q 'restrict=on' <(tr '\0' ' ' </proc/"$tpid"/cmdline) || fail "the test machine's network is not isolated: $(tr '\0' ' ' </proc/"$tpid"/cmdline)"
ok GET /items/item-1/console?machine=test >/dev/null
before=$(last_wrote "$work/source-console.log")
sleep 1
(($(last_wrote "$work/source-console.log") > before)) || fail "the source stopped writing during the test failover"
job=$(ok POST /items/item-1/cleanup-test-failover '{"notes": "boot drill"}' | job_of)
wait_job "$job"
[[ $(item_state) == Protected ]] || fail "item is $(item_state) after cleanup"
for _ in $(seq 50); do pgrep -f "$work/b-data/machines/vm1-test/" >/dev/null || break; sleep 0.1; done
pgrep -f "$work/b-data/machines/vm1-test/" >/dev/null && fail "the test machine still runs after cleanup"
[[ -d $work/b-data/machines/vm1-test ]] && fail "cleanup left the test machine's directory"
[[ $(ok GET /items/item-1 | json 'j["last_test_failover"]["boot_seconds"] is not None') == True ]] ||
  fail "the last test does not record its boot time: $(ok GET /items/item-1 | json 'j["last_test_failover"]')"

# timed_failover LABEL BODY: a failover job from request to Succeeded (its boot step waits
# for the probe), with its time and its steps' times printed; the job id in $job.
timed_failover() {
  local t0=$EPOCHREALTIME t1
  job=$(ok POST /items/item-1/failover "$2" | job_of)
  wait_job "$job"
  t1=$EPOCHREALTIME
  echo "$1 (seconds per step): $(job_steps "$job")"
  echo "$1: request to probe ok $("$py" -c "print('%.2f' % ($t1 - $t0))") s"
}

echo "== 2. failover to latest, shutting the source down"
timed_failover failover '{"point": "latest", "shutdown_source": true}'
boot_msg=$(ok GET "/jobs/$job" | json '[s["message"] for s in j["steps"] if s["name"] == "boot"][0]')
[[ $boot_msg == *"answered its probe"* ]] || fail "the boot step does not show the probe: $boot_msg"
echo "boot step: $boot_msg"
[[ $(item_state) == FailedOver ]] || fail "item is $(item_state) after the failover"
for _ in $(seq 100); do kill -0 "$src_qemu" 2>/dev/null || break; sleep 0.1; done
kill -0 "$src_qemu" 2>/dev/null && fail "the source machine still runs after a failover that shut it down"
grep -q '^ferry-guest: powering off after record' "$work/source-console.log" ||
  fail "the source machine was not powered off gracefully"
src_synced=$(last_wrote "$work/source-console.log")
text=$(console)
recovered=$(records_of "$text" "recovered machine")
((recovered >= src_synced + 1)) || fail "the recovered machine found $recovered records; the source synced 0..$src_synced"
echo "recovered machine: records 0..$((recovered - 1)); the source had synced 0..$src_synced: nothing lost"
grep -q '^ferry-guest: network eth0 10.0.2.50' <<<"$text" || fail "the recovered machine did not get the item's IP address 10.0.2.50"
"$ferry" item console item-1 --server "$url" --token "$stoken" >"$work/cli-console.txt" ||
  fail "ferry item console failed"
grep -q '^ferry-guest: ready' "$work/cli-console.txt" || fail "ferry item console does not show the boot: $(head "$work/cli-console.txt")"

echo "== the recovery node is killed -9 and restarted under the running machine"
rec_log=$work/b-data/machines/vm1/console.log
before=$(last_wrote "$rec_log")
kill9_node b
sleep 2
start_node b
for _ in $(seq 600); do (($(last_wrote "$rec_log") >= before + 10)) && break; sleep 0.1; done
(($(last_wrote "$rec_log") >= before + 10)) || fail "the machine did not go on writing after its node restarted (record $(last_wrote "$rec_log"), $before before)"
grep -q '^ferry-guest: error' "$rec_log" && fail "the machine saw errors across its node's restart"
[[ $(api b GET /v1/machines/vm1 | json 'j["state"]') == Running ]] || fail "node b does not find vm1 running after its restart"
echo "machine went on from record $before to $(last_wrote "$rec_log") across the node's restart"

echo "== 3. it writes more; commit; reprotect (delta); failback"
for _ in $(seq 300); do
  w=$(console | grep -a '^wrote ' | tail -1 | cut -d' ' -f2)
  [[ -n $w ]] && ((w >= recovered + 20)) && break
  sleep 0.1
done
[[ -n $w ]] && ((w >= recovered + 20)) || fail "the recovered machine did not write 20 more records"
job=$(ok POST /items/item-1/commit '{}' | job_of)
wait_job "$job"
job=$(ok POST /items/item-1/reprotect '{}' | job_of)
wait_job "$job"
[[ $(item_state) == Protected ]] || fail "item is $(item_state) after reprotect"
echo "reprotect: $(ok GET "/jobs/$job" | json '[s["message"] for s in j["steps"] if s["name"] == "sync"][0]')"
sent=$(ok GET "/jobs/$job" | json '[s["message"] for s in j["steps"] if s["name"] == "sync"][0]' | sed -n 's/.*sent \([0-9]*\) bytes on the wire.*/\1/p')
[[ -n $sent ]] || fail "the reprotect job does not say what it sent"
((sent < 16 * 1024 * 1024)) || fail "reprotect sent $sent bytes for a 64 MiB disk: not a delta"
timed_failover failback '{"planned": true}'
[[ $(item_state) == FailedOver ]] || fail "item is $(item_state) after failback"
rec_console=$(ls "$work"/b-data/machines/vm1/console.log 2>/dev/null || true)
rec_synced=
[[ -n $rec_console ]] && rec_synced=$(last_wrote "$rec_console")
text=$(console)
home=$(records_of "$text" "machine back home")
[[ -n $rec_synced ]] || rec_synced=$w
((home >= rec_synced + 1)) || fail "back home the machine found $home records; the recovery site synced 0..$rec_synced"
echo "back home: records 0..$((home - 1)); the recovery site had synced 0..$rec_synced: nothing lost"
job=$(ok POST /items/item-1/commit '{}' | job_of)
wait_job "$job"
job=$(ok POST /items/item-1/reprotect '{}' | job_of)
wait_job "$job"
[[ $(item_state) == Protected ]] || fail "item is $(item_state) after reprotecting forward"
echo "PASS: launch_e2e"
