#!/usr/bin/env bash
# Cancel at every step: `ferry server` and two nodes; one machine with one disk. For every
# forward step of failover (unplanned, shutting the source down), resync, test-failover, commit
# (up to its point of no return), reprotect and failback, the server is started with that step held
# (FERRY_HOLD_AT=job.TYPE.STEP, base/crash_point.h), the operation is started, the job is
# cancelled while it waits there, and then the item must be back in the state the workflow's
# undo steps define, with nothing the job made left on the target node, the source not fenced,
# and replication running: a write at the source becomes a recovery point at the target.
# The steps come from each job's own step list (its first run holds "job.TYPE.*", the first
# step), so steps added to a workflow are covered without changing this test.
set -euo pipefail
ferry=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
work=$(mktemp -d /tmp/ferry-cancel.XXXXXX)
NODES="a b"
source "$here/lib/nodes.sh"
source "$here/lib/server.sh"
t0=$SECONDS
start_server
url="http://127.0.0.1:$server_port"
export FERRY_SERVER=$url FERRY_TOKEN=$stoken FERRY_CONFIG=/dev/null

enroll_nodes
ok POST /policies '{"name": "fast", "rpo_threshold_seconds": 30, "crash_consistent_interval_seconds": 1, "app_consistent_interval_seconds": 0}' >/dev/null
ok POST /machines "{\"name\": \"web1\", \"site\": \"primary\", \"node\": \"node-a\", \"disks\": [{\"name\": \"disk0\", \"path\": \"$work/web1-disk0.img\", \"size\": 16777216}]}" >/dev/null
wait_job "$(ok POST /items '{"machine": "web1", "target_site": "recovery", "policy": "fast"}' | job_of)"
vol=web1.disk0

item() { ok GET /items/item-1; }
# vol_info NODE: the item's volume on NODE as "FENCED URI LOG_LAST_SEQ LINK_SETTING" (- - 0 - if none).
vol_info() {
  api "$1" GET /v1/status | json "' '.join(str(x) for x in next(((v['fenced'], v['uri'], v['log_last_seq'],
    (v['link'] or {}).get('setting', 'none')) for v in j['volumes'] if v['name'] == '$vol'), ('-', '-', 0, '-')))"
}
# What NODE serves: its replicas' overlays, its machines and the exports it lists (capture
# volumes, aliases).
served() {
  api "$1" GET /v1/status | json "sorted(o['name'] for r in j['replicas'] for o in r['overlays'])"
  api "$1" GET /v1/machines | json "sorted(m['name'] for m in j['machines'])"
  timeout 20 nbdinfo --list --json "nbd+unix:///?socket=$work/$1.sock" |
    json 'sorted(e["export-name"] for e in j["exports"])' || echo "nbdinfo --list failed"
}
# overlay_uris NODE: where NODE serves its overlays, one a line.
overlay_uris() { api "$1" GET /v1/status | json "'\\n'.join(o['uri'] for r in j['replicas'] for o in r['overlays'])"; }

# replicating SOURCE TARGET: the source's volume is not fenced and takes a write through its
# export; within 15 s the target holds a recovery point after it (the policy's crash-consistent
# marker, every second).
replicating() {
  local s=$1 t=$2 fenced uri last setting
  read -r fenced uri last setting <<<"$(vol_info "$s")"
  [[ $fenced == False && $setting == running ]] ||
    fail "the source volume on node $s is fenced or does not replicate: $(vol_info "$s")"
  timeout 20 qemu-io -f raw -c "write -P $((RANDOM % 255 + 1)) $(((RANDOM % 128 + 128) * 65536)) 64k" "$uri" \
    >/dev/null || fail "the source on node $s refuses writes"
  read -r fenced uri last setting <<<"$(vol_info "$s")"
  wait_for "http://127.0.0.1:${api_port[$t]}/v1/replicas/$vol/points?limit=1" "$token" \
    "(j['points'] or [{'seq': 0}])[0]['seq'] > $last" 15 0.2 >/dev/null ||
    fail "no recovery point after seq $last reached node $t within 15 s: $(vol_info "$s")"
}

# wait_for URL TOKEN EXPR [TIMEOUT_S [INTERVAL_S]]: tests/tools/wait_for.py (one process per wait).
wait_for() { "$py" "$here/tools/wait_for.py" "$@"; }
final='("Succeeded", "Failed", "Cancelled", "Suspended")'

# cancel_each TYPE CHECK START...: for every forward step of TYPE, restarts the server holding
# it, runs START (prints the new job's id), cancels the job once it is held there, waits until
# it is Cancelled with every undo step done, and runs CHECK JOB. At the first step that the job
# says can no longer be cancelled (allowed_actions lacks "cancel": a point of no return has
# passed) it checks that cancel is refused and returns, leaving that job in $uncancellable.
# Cancels go through the CLI (`ferry job cancel --wait`) when $via_cli is set, else the API.
# The steps are the job's own: the first run holds "job.TYPE.*", which is its first step.
# An overlay on the $target node that the cancel removed must no longer be served over NBD.
uncancellable=
via_cli=
target=
cancel_each() {
  local type=$1 check=$2 steps=("*") i=0 job step j t cancellable rc during uri
  shift 2
  uncancellable=
  while ((i < ${#steps[@]})); do
    t=$SECONDS
    stop_server
    start_server "FERRY_HOLD_AT=job.$type.${steps[$i]}"
    job=$("$@")
    # Once a step is held: its name, whether the steps before it all succeeded and the later
    # ones wait, whether cancel is allowed, and the job's forward steps.
    j=$(wait_for "$url/api/v1/jobs/$job" "$stoken" '(lambda r, held: (held and " ".join([held[0],
        str([s["state"] for s in r] == ["Succeeded"] * '"$i"' + ["InProgress"] + ["NotStarted"] * (len(r) - '"$i"' - 1)),
        str("cancel" in j["allowed_actions"]), ",".join(s["name"] for s in r)])) or
        (j["state"] in '"$final"' and stop("the job is " + j["state"])))(
        [s for s in j["steps"] if s["phase"] == "run"], [s["name"] for s in j["steps"] if s["phase"] == "run" and
        s["state"] == "InProgress" and s["message"].startswith("held by FERRY_HOLD_AT")])' 60) ||
      fail "job $job was not held: $(ok GET "/jobs/$job")"
    read -r step ordered cancellable names <<<"$j"
    ((i > 0)) || IFS=, read -ra steps <<<"$names"
    [[ $step == "${steps[$i]}" && $ordered == True ]] ||
      fail "job $job is held at $step, want ${steps[$i]} with the steps before it done: $(ok GET "/jobs/$job")"
    if [[ $cancellable != True ]]; then
      refused 409 FailedPrecondition POST "/jobs/$job/cancel" '{}'
      uncancellable=$job
      echo "   $type: held at $step (after its point of no return): cancel refused"
      return 0
    fi
    during=$(overlay_uris "$target")
    if [[ -n $via_cli ]]; then
      rc=0
      "$ferry" job cancel "$job" --wait >"$work/cli.out" 2>&1 || rc=$?
      ((rc == 6)) || fail "ferry job cancel $job --wait: exit $rc, want 6 (Cancelled): $(cat "$work/cli.out")"
    else
      ok POST "/jobs/$job/cancel" '{}' >/dev/null
    fi
    # Cancelled, every undo step done, no action left; prints the undo steps.
    names=$(wait_for "$url/api/v1/jobs/$job" "$stoken" '(lambda u: (j["state"] == "Cancelled" and
        all(s["state"] == "Succeeded" for s in u) and j["allowed_actions"] == [] and ",".join(s["name"] for s in u))
        or (j["state"] in '"$final"' and stop("the job is " + j["state"] + " with undo steps " + str(u))))(
        [s for s in j["steps"] if s["phase"] == "undo"])' 60) ||
      fail "job $job did not end Cancelled with every undo step done: $(ok GET "/jobs/$job")"
    for uri in $(comm -23 <(sort <<<"$during") <(overlay_uris "$target" | sort)); do
      if timeout 20 nbdinfo "$uri" >/dev/null 2>&1; then fail "job $job was cancelled, but $uri is still served"; fi
    done
    "$check" "$job"
    echo "   $type: cancelled at $step, undone by $names ($((SECONDS - t)) s)"
    i=$((i + 1))
  done
}
# restart_plain: a server without hold points (a held job goes on from where it was).
restart_plain() { stop_server; start_server; }

# The checks after a cancel, one per state the undo steps return to.
before=
protected_again() {  # failover, test-failover, failback: Protected, the target as before
  local it state idle s t
  it=$(item)
  read -r state idle s t <<<"$(json '" ".join([j["state"], str(j["allowed_operations"] != [] and j["failover"] is None
      and j["test_failover"] is None), *(["a", "b"] if j["direction"] == "forward" else ["b", "a"])])' <<<"$it")"
  [[ $state == Protected && $idle == True ]] || fail "after cancelling $1 the item is not Protected and idle: $it"
  [[ $(served "$t") == "$before" ]] || fail "job $1 left disks on node $t: $(served "$t"), before: $before"
  replicating "$s" "$t"
}
failed_over_again() {  # commit before its point of no return: FailedOver, the disks still there
  local it state uri
  it=$(item)
  read -r state uri <<<"$(json 'j["state"] + " " + j["disks"][0]["uri"]' <<<"$it")"
  [[ $state == FailedOver && $(json 'j["allowed_operations"]' <<<"$it") == "['change-recovery-point', 'commit']" ]] ||
    fail "after cancelling $1 the item is not FailedOver and idle: $it"
  [[ $(served b) == "$before" ]] || fail "job $1 changed what node b serves: $(served b), before: $before"
  timeout 20 qemu-io -f raw -c 'read -P 0x5a 0 64k' -c 'write -P 0x5a 64k 64k' "$uri" >/dev/null ||
    fail "the failed-over disk lost its data or refuses writes after cancelling $1"
}
committed_again() {  # reprotect: Committed in the direction it had, no reverse replication
  local it state fenced uri last setting
  it=$(item)
  [[ $(json '(j["state"], j["direction"], j["allowed_operations"])' <<<"$it") == "('Committed', 'forward', ['reprotect'])" ]] ||
    fail "after cancelling $1 the item is not Committed forward and idle: $it"
  read -r fenced uri last setting <<<"$(vol_info b)"
  [[ $fenced != True && $setting != running && $setting != paused ]] ||
    fail "after cancelling $1 the recovered disk is fenced or still replicates: $(vol_info b)"
  timeout 20 qemu-io -f raw -c 'read -P 0x5a 0 64k' -c 'write -P 0x5a 64k 64k' "$(json 'j["disks"][0]["uri"]' <<<"$it")" \
    >/dev/null || fail "the recovered machine's disk lost its data or refuses writes after cancelling $1"
}

start_failover() { ok POST /items/item-1/failover '{"point": "latest", "shutdown_source": true}' | job_of; }
start_test() { ok POST /items/item-1/test-failover '{"point": "latest"}' | job_of; }
start_commit() { ok POST /items/item-1/commit '{}' | job_of; }
start_reprotect() { ok POST /items/item-1/reprotect '{}' | job_of; }
start_failback() { "$ferry" failback item-1; }
start_resync() { ok POST /items/item-1/resync '{}' | job_of; }

echo "== failover (unplanned, shutting the source down): cancel at every step"
target=b
before=$(served b)
cancel_each failover protected_again start_failover
[[ -z $uncancellable ]] || fail "failover has a step that cannot be cancelled"

echo "== resync (a forced digest resync): cancel at every step"
cancel_each resync protected_again start_resync
[[ -z $uncancellable ]] || fail "resync has a step that cannot be cancelled"

echo "== test failover: cancel at every step (through the CLI)"
via_cli=1
cancel_each test-failover protected_again start_test
[[ -z $uncancellable ]] || fail "test-failover has a step that cannot be cancelled"
via_cli=

echo "== failover, then commit: cancel at every step before its point of no return"
restart_plain
read -r _ uri _ _ <<<"$(vol_info a)"
timeout 20 qemu-io -f raw -c 'write -P 0x5a 0 64k' "$uri" >/dev/null || fail "write at the source"
wait_job "$(start_failover)"
before=$(served b)
cancel_each commit failed_over_again start_commit
[[ -n $uncancellable ]] || fail "commit was cancellable at every step: it has no point of no return"
restart_plain
wait_job "$uncancellable"
[[ $(item_state) == Committed ]] || fail "item is $(item_state) after the commit"

echo "== reprotect: cancel at every step"
cancel_each reprotect committed_again start_reprotect
[[ -z $uncancellable ]] || fail "reprotect has a step that cannot be cancelled"
restart_plain
wait_job "$(start_reprotect)"
[[ $(item | json '(j["state"], j["direction"])') == "('Protected', 'reverse')" ]] || fail "not protected in reverse: $(item)"
replicating b a

echo "== failback (planned failover in reverse): cancel at every step (through the CLI)"
via_cli=1
target=a
before=$(served a)
cancel_each failover protected_again start_failback
[[ -z $uncancellable ]] || fail "failback has a step that cannot be cancelled"

echo "control cancel: OK ($((SECONDS - t0)) s)"
