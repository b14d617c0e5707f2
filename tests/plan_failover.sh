#!/usr/bin/env bash
# Recovery plans end to end: `ferry server` and two nodes, three machines (db1, app1, web1)
# in a plan of three ordered groups with scripts that record their order and context, a
# script that fails, a script run on a node, and a manual action. The plan goes around the
# cycle: test failover (the failing script stops it; retry goes on) → cleanup → a test
# failover of the consistency group's common point through the CLI → a cancelled test
# failover and a cancelled failover that shut the sources down (everything back, nothing
# left on the target, the sources writing and replicating) → unplanned failover with the
# server killed -9 inside it (it resumes; the failing script only warns) → commit → reprotect
# → failback (planned: the manual action suspends the job until it is resumed) → commit →
# reprotect. The data written at the source before the failover is read back from the
# recovered disks.
set -euo pipefail
ferry=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
work=$(mktemp -d /tmp/ferry-plan.XXXXXX)
NODES="a b"
source "$here/lib/nodes.sh"
source "$here/lib/server.sh"
start_server
start_api_proxy  # every exchange is checked against src/api/openapi.yaml
enroll_nodes
ok POST /policies '{"name": "fast", "rpo_threshold_seconds": 30, "crash_consistent_interval_seconds": 1, "app_consistent_interval_seconds": 0}' >/dev/null

machines="db1 app1 web1"
for m in $machines; do
  ok POST /machines "{\"name\": \"$m\", \"site\": \"primary\", \"node\": \"node-a\", \"disks\": [{\"name\": \"disk0\", \"path\": \"$work/$m.img\", \"size\": 16777216}]}" >/dev/null
  # db1 and app1 recover to the same instant: a consistency group.
  cg=
  [[ $m == web1 ]] || cg=', "consistency_group": "shop-cg"'
  jobs+=("$(ok POST /items "{\"machine\": \"$m\", \"target_site\": \"recovery\", \"policy\": \"fast\"$cg}" | job_of)")
done
for j in "${jobs[@]}"; do wait_job "$j"; done
item_state_of() { ok GET "/items/$1" | json 'j["state"]'; }
states() { for m in $machines; do printf '%s ' "$(item_state_of "$m")"; done; }

# The scripts: record.sh appends "GROUP PHASE ACTION TYPE DIRECTION OPERATION" to the log and
# keeps the context; flaky.sh does the same but fails until $work/fixed exists.
log="$work/actions.log"
ctx="$work/contexts"
mkdir -p "$ctx"
cat >"$work/record.sh" <<EOF
#!/bin/sh
echo "\$FERRY_GROUP_INDEX \$FERRY_PHASE \$FERRY_ACTION \$FERRY_FAILOVER_TYPE \$FERRY_DIRECTION \$FERRY_OPERATION \$FERRY_PLAN" >>"$log"
cp "\$FERRY_CONTEXT" "$ctx/\$FERRY_JOB-\$FERRY_GROUP_INDEX-\$FERRY_PHASE-\$FERRY_ACTION.json"
EOF
cat >"$work/flaky.sh" <<EOF
#!/bin/sh
"$work/record.sh"
[ -f "$work/fixed" ] || { echo "the app is not ready"; exit 3; }
EOF
chmod +x "$work/record.sh" "$work/flaky.sh"
script() { echo "{\"kind\": \"script\", \"name\": \"$1\", \"command\": \"$2\"${3:+, $3}}"; }
plan=$(cat <<EOF
{"name": "shop", "source_site": "primary", "target_site": "recovery", "description": "the shop",
 "groups": [
  {"name": "db", "machines": ["db1"], "pre": [$(script g1pre "$work/record.sh")], "post": [$(script g1post "$work/record.sh")]},
  {"name": "app", "machines": ["app1"],
   "pre": [{"kind": "manual", "name": "check", "instructions": "Check the app's licence server",
            "types": ["planned"], "directions": ["reverse"]}],
   "post": [$(script flaky "$work/flaky.sh")]},
  {"name": "web", "machines": ["web1"], "pre": [$(script g3pre "$work/record.sh" '"node": "node-b"')]}]}
EOF
)
ok POST /plans "$plan" >/dev/null

echo "== readiness"
ready=$(ok GET /plans/shop/readiness)
[[ $(json 'j["ready"]' <<<"$ready") == True ]] || fail "the plan is not ready: $ready"

# plan_op OP [BODY]: starts a plan operation, prints its job id.
plan_op() { ok POST "/plans/shop/$1" "${2:-{\}}" | job_of; }
steps_of() { ok GET "/jobs/$1" | json '" ".join(s["name"] + "=" + s["state"] for s in j["steps"])'; }
step_of() { ok GET "/jobs/$1" | json "next(s['state'] + ' ' + s['message'] for s in j['steps'] if s['name'] == '$2')"; }
# log_is EXPECTED...: the log holds exactly these lines (group phase action), then is emptied.
log_is() {
  local got want
  got=$(cut -d' ' -f1-3 "$log" 2>/dev/null | paste -sd, || true)
  want=$(IFS=,; echo "$*")
  [[ $got == "$want" ]] || fail "the actions ran as [$got], want [$want]: $(cat "$log")"
  : >"$log"
}

echo "== test failover: groups in order; a failing script stops it; retry goes on"
job=$(plan_op test-failover)
wait_job "$job" Failed
[[ $(head -n1 "$log") == "1 pre g1pre test forward test-failover shop" ]] || fail "the script's environment: $(head -n1 "$log")"
log_is "1 pre g1pre" "1 post g1post" "2 post flaky"
[[ $(step_of "$job" group-2-post/flaky) == Failed* ]] || fail "the failing script's step: $(step_of "$job" group-2-post/flaky)"
[[ $(step_of "$job" group-3/web1) == NotStarted* ]] || fail "group 3 started after a failed group: $(steps_of "$job")"
[[ $(ok GET "/jobs/$job" | json 'j["error"]["message"]') == *"the app is not ready"* ]] ||
  fail "the job's error: $(ok GET "/jobs/$job")"
[[ $(states) == "TestFailover TestFailover Protected " ]] || fail "items after the stop: $(states)"
# The context of group 1's pre action: the plan, the type, its machine with its disk's URI.
c="$ctx/$job-1-pre-g1pre.json"
[[ $(json '(j["plan"]["name"], j["failover_type"], j["direction"], j["group"]["index"], j["machines"][0]["machine"], j["machines"][0]["disks"][0]["uri"][:6], bool(j["machines"][0]["recovery_point"]["time"]))' <"$c") == \
   "('shop', 'test', 'forward', 1, 'db1', 'nbd+un', True)" ]] || fail "the context: $(cat "$c")"
touch "$work/fixed"
ok POST "/jobs/$job/retry" "{}" >/dev/null
wait_job "$job"
log_is "2 post flaky" "3 pre g3pre"
[[ $(states) == "TestFailover TestFailover TestFailover " ]] || fail "items after the test failover: $(states)"
# One step per machine and per group action, in the documented order.
names=$(ok GET "/jobs/$job" | json '" ".join(s["name"] for s in j["steps"])')
want="preflight/db1 preflight/app1 preflight/web1 prepare/db1 prepare/app1 prepare/web1 group-1-pre/g1pre group-1/db1 group-1 group-1-post/g1post group-2/app1 group-2 group-2-post/flaky group-3-pre/g3pre group-3/web1 group-3 finish"
[[ $names == "$want" ]] || fail "the job's steps: $names"
[[ $(ok GET /plans/shop | json 'j["active_job"]') == None ]] || fail "the plan still has a job: $(ok GET /plans/shop)"

echo "== cleanup"
wait_job "$(plan_op cleanup-test-failover '{"notes": "drill ok"}')"
[[ $(states) == "Protected Protected Protected " ]] || fail "items after the cleanup: $(states)"
[[ $(ok GET /items/web1 | json 'j["last_test_failover"]["notes"]') == "drill ok" ]] || fail "no last test recorded"

echo "== latest-multi-machine: the group's members at its common point, the others at their latest"
for _ in $(seq 150); do
  [[ $(ok GET /consistency-groups/shop-cg | json 'j["latest_common_point"] is not None') == True ]] && break
  sleep 0.2
done
# Through the CLI, as an operator would.
export FERRY_SERVER=$url FERRY_TOKEN=$stoken FERRY_CONFIG=/dev/null
"$ferry" plan test-failover shop --point latest-multi-machine --wait >"$work/cli.out" 2>&1 ||
  fail "ferry plan test-failover: $(cat "$work/cli.out")"
job=$(ok GET /plans/shop | json 'j["last_operation"]["job"]')
[[ $(step_of "$job" choose-points) == "Succeeded 2 machines at their group's common point"* ]] ||
  fail "choose-points: $(step_of "$job" choose-points)"
p_db=$(ok GET /items/db1 | json 'j["test_failover"]["point"]')
p_app=$(ok GET /items/app1 | json 'j["test_failover"]["point"]')
p_web=$(ok GET /items/web1 | json 'j["test_failover"]["point"]')
[[ $p_db == marker:* && $p_db == "$p_app" && $p_web == latest ]] ||
  fail "multi-machine points: db1 $p_db, app1 $p_app, web1 $p_web"
: >"$log"
"$ferry" plan cleanup-test-failover shop --notes "multi-machine drill" --wait >"$work/cli.out" 2>&1 ||
  fail "ferry plan cleanup-test-failover: $(cat "$work/cli.out")"
[[ $(states) == "Protected Protected Protected " ]] || fail "items after the CLI's cleanup: $(states)"

echo "== a test failover cancelled in group 3 leaves nothing behind"
stop_server
start_server FERRY_HOLD_AT=job.plan-test-failover.group-3/web1
job=$(plan_op test-failover)
for _ in $(seq 300); do
  [[ $(step_of "$job" group-3/web1) == *"held by FERRY_HOLD_AT"* ]] && break
  sleep 0.1
done
[[ $(step_of "$job" group-3/web1) == *"held by"* ]] || fail "the job did not reach group 3: $(steps_of "$job")"
ok POST "/jobs/$job/cancel" "{}" >/dev/null
wait_job "$job" Cancelled
[[ $(states) == "Protected Protected Protected " ]] || fail "items after the cancel: $(states)"
overlays=$(api b GET /v1/status | json 'sum(len(r["overlays"]) for r in j["replicas"])')
[[ $overlays == 0 ]] || fail "the cancelled test left $overlays overlays on the target"
: >"$log"

echo "== a failover that shut the sources down, cancelled in group 2: the sources write again"
stop_server
start_server FERRY_HOLD_AT=job.plan-failover.group-2/app1
job=$(plan_op failover '{"shutdown_source": true}')
for _ in $(seq 300); do
  [[ $(step_of "$job" group-2/app1) == *"held by FERRY_HOLD_AT"* ]] && break
  sleep 0.1
done
[[ $(step_of "$job" group-2/app1) == *"held by"* ]] || fail "the failover did not reach group 2: $(steps_of "$job")"
[[ $(api a GET /v1/status | json '[v["fenced"] for v in j["volumes"]]') == "[True, True, True]" ]] ||
  fail "the sources were not shut down: $(api a GET /v1/status)"
ok POST "/jobs/$job/cancel" "{}" >/dev/null
wait_job "$job" Cancelled
[[ $(states) == "Protected Protected Protected " ]] || fail "items after the cancelled failover: $(states)"
[[ $(api a GET /v1/status | json '[(v["fenced"], (v["link"] or {}).get("setting")) for v in j["volumes"]]') == \
   "[(False, 'running'), (False, 'running'), (False, 'running')]" ]] ||
  fail "after the cancel the sources are fenced or do not replicate: $(api a GET /v1/status)"
[[ $(api b GET /v1/status | json 'sum(len(r["overlays"]) for r in j["replicas"])') == 0 ]] ||
  fail "the cancelled failover left overlays on the target"
: >"$log"
stop_server
start_server

echo "== data at the sources, then an unplanned failover with the server killed -9 inside it"
rm -f "$work/fixed"
declare -A pattern=([db1]=161 [app1]=162 [web1]=163)
# recovered_data WHEN: every machine's active disk holds the pattern written at its source.
recovered_data() {
  local m uri
  for m in $machines; do
    uri=$(ok GET "/items/$m" | json 'j["disks"][0]["uri"]')
    timeout 20 qemu-io -f raw -c "read -P ${pattern[$m]} 1M 256k" "$uri" >"$work/qio.out" 2>&1 ||
      fail "$1, $m does not hold its data: $(cat "$work/qio.out")"
  done
}
for m in $machines; do
  uri=$(api a GET /v1/status | json "next(v['uri'] for v in j['volumes'] if v['name'] == '$m.disk0')")
  timeout 20 qemu-io -f raw -c "write -P ${pattern[$m]} 1M 256k" "$uri" >/dev/null || fail "cannot write to $m"
done
sleep 3  # a crash-consistent point every second carries the writes to the target
stop_server
start_server FERRY_CRASH_AT=job.plan-failover.group-2/app1
job=$(plan_op failover)
for _ in $(seq 300); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$server_pid" 2>/dev/null && fail "the server did not crash at group 2: $(steps_of "$job")"
wait "$server_pid" 2>/dev/null || true
server_pid=
start_server
wait_job "$job"
log_is "1 pre g1pre" "1 post g1post" "2 post flaky" "3 pre g3pre"
[[ $(step_of "$job" group-2) == "Succeeded 1 of 1 machines started" ]] || fail "group 2's step: $(step_of "$job" group-2)"
[[ $(step_of "$job" group-2-post/flaky) == *"going on"* ]] || fail "unplanned: the failing script should warn: $(step_of "$job" group-2-post/flaky)"
[[ $(states) == "FailedOver FailedOver FailedOver " ]] || fail "items after the failover: $(states)"
recovered_data "after the failover"

echo "== commit, reprotect"
wait_job "$(plan_op commit)"
[[ $(states) == "Committed Committed Committed " ]] || fail "items after the commit: $(states)"
wait_job "$(plan_op reprotect)"
[[ $(states) == "Protected Protected Protected " ]] || fail "items after the reprotect: $(states)"
[[ $(ok GET /items/db1 | json 'j["direction"]') == reverse ]] || fail "the items do not replicate back"

echo "== failback: planned; the manual action suspends the job until resumed"
touch "$work/fixed"
job=$(plan_op failback)
wait_job "$job" Suspended
[[ $(step_of "$job" group-2-pre/check) == "Suspended Check the app's licence server"* ]] ||
  fail "the manual step: $(step_of "$job" group-2-pre/check)"
[[ $(step_of "$job" group-2/app1) == NotStarted* ]] || fail "group 2 started before the manual action: $(steps_of "$job")"
ok POST "/jobs/$job/resume" '{"comment": "licence server is up"}' >/dev/null
wait_job "$job"
[[ $(step_of "$job" group-2-pre/check) == "Succeeded resumed: licence server is up" ]] ||
  fail "the manual step after resume: $(step_of "$job" group-2-pre/check)"
log_is "1 pre g1pre" "1 post g1post" "2 post flaky" "3 pre g3pre"
[[ $(json 'j["failover_type"] + " " + j["direction"]' <"$ctx/$job-1-pre-g1pre.json") == "planned reverse" ]] ||
  fail "the failback's context: $(cat "$ctx/$job-1-pre-g1pre.json")"
[[ $(states) == "FailedOver FailedOver FailedOver " ]] || fail "items after the failback: $(states)"
recovered_data "after the failback"

echo "== commit, reprotect forward again"
wait_job "$(plan_op commit)"
wait_job "$(plan_op reprotect)"
[[ $(states) == "Protected Protected Protected " ]] || fail "items at the end: $(states)"
[[ $(ok GET /items/db1 | json 'j["direction"]') == forward ]] || fail "the items do not replicate forward again"
[[ $(ok GET /plans/shop | json 'j["last_operation"]["operation"] + " " + j["last_operation"]["state"]') == "reprotect Succeeded" ]] ||
  fail "the plan's last operation: $(ok GET /plans/shop)"
check_api_proxy
echo "PASS plan_failover"
