#!/usr/bin/env bash
# plan_bench.sh: the recovery-plan benchmark of the plans issue. A plan of N machines (small
# disks, the `none` launcher) in G groups: the time from the request to every machine
# started, for a test failover and for an unplanned failover, against the same machines
# failed over item by item through the same server in the same run (one after the other, as a
# script without plans would; and all at once, each its own job). A benchmark, not a test:
# it exits 0 whatever the figures (non-zero only if something could not run).
#
#   Requirement: a plan of 200 machines across 5 groups; report the time from the request to
#   all started. (The barrier's hold time is bench/barrier_bench.sh.)
#
# One run: `ferry server` (SQLite) and two nodes on loopback (tests/lib: TLS links, one
# site each); N machines with one 1 MiB disk each on the first node, protected toward the
# second (all enable jobs at once); a plan with the machines spread over G groups in order.
#   1. plan test-failover: request → job Succeeded, and request → the last machine's start
#      step ended (from the job's timestamps). Then cleanup.
#   2. item by item, one after the other: POST /items/ID/test-failover, wait, next; then the
#      cleanups (not timed).
#   3. item by item, all at once: every POST, then wait for every job; then the cleanups.
#   4. plan failover (unplanned, latest): request → all started.
# The ratios are the baseline's time over the plan's.
#
# Usage: bench/plan_bench.sh BUILD_DIR [--machines N] [--groups G] [--markdown]
set -euo pipefail
build=$(realpath "$1")
shift
machines=200 groups=5 markdown=${FERRY_BENCH_MARKDOWN:-0}
while [[ $# -gt 0 ]]; do
  case $1 in
    --machines) machines=$2; shift 2 ;;
    --groups) groups=$2; shift 2 ;;
    --markdown) markdown=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
ferry=$build/ferry
here=$(cd "$(dirname "$0")/../tests" && pwd)
py=/usr/bin/python3
work=$(mktemp -d /tmp/ferry-planbench.XXXXXX)
NODES="a b"
source "$here/lib/nodes.sh"
source "$here/lib/server.sh"
start_server
url="http://127.0.0.1:$server_port"
enroll_nodes
now() { date +%s.%N; }
since() { "$py" -c "print(f'{$(now) - $1:.2f}')"; }

echo "setting up $machines machines ..." >&2
t=$(now)
ids=()
for i in $(seq "$machines"); do
  ok POST /machines "{\"name\": \"m$i\", \"site\": \"primary\", \"node\": \"node-a\", \"disks\": [{\"name\": \"disk0\", \"path\": \"$work/m$i.img\", \"size\": 1048576}]}" >/dev/null
  ids+=("$(ok POST /items "{\"machine\": \"m$i\", \"target_site\": \"recovery\"}" | job_of)")
done
for j in "${ids[@]}"; do wait_job "$j"; done
setup_s=$(since "$t")
echo "protected in $setup_s s" >&2
per=$(((machines + groups - 1) / groups))
plan=$("$py" - "$machines" "$groups" "$per" <<'EOF'
import json, sys
n, g, per = map(int, sys.argv[1:])
groups = [{"name": f"g{k + 1}", "machines": [f"m{i}" for i in range(k * per + 1, min(n, (k + 1) * per) + 1)]}
          for k in range(g)]
print(json.dumps({"name": "bench", "source_site": "primary", "target_site": "recovery", "groups": groups}))
EOF
)
ok POST /plans "$plan" >/dev/null

# started JOB T0: seconds from T0 (epoch) to the end of the job's last start step.
started() {
  ok GET "/jobs/$1" | "$py" -c "
import json, sys, datetime
j = json.load(sys.stdin)
ends = [datetime.datetime.fromisoformat(s['ended_at'].replace('Z', '+00:00')).timestamp()
        for s in j['steps'] if s['name'].startswith('group-') and s['ended_at']]
print(f'{max(ends) - $2:.2f}')"
}
# each_item OP: OP on every item at once (a job each), then waits for every job.
each_item() {
  local i ids=()
  for i in $(seq "$machines"); do ids+=("$(ok POST "/items/m$i/$1" '{}' | job_of)"); done
  for i in "${ids[@]}"; do wait_job "$i"; done
}

echo "plan test failover ..." >&2
t=$(now)
job=$(ok POST /plans/bench/test-failover '{}' | job_of)
wait_job "$job"
plan_test_s=$(since "$t")
plan_test_started_s=$(started "$job" "$t")
wait_job "$(ok POST /plans/bench/cleanup-test-failover '{}' | job_of)"

echo "item by item, one after the other ..." >&2
t=$(now)
for i in $(seq "$machines"); do wait_job "$(ok POST "/items/m$i/test-failover" '{}' | job_of)"; done
seq_s=$(since "$t")
each_item cleanup-test-failover

echo "item by item, all at once ..." >&2
t=$(now)
each_item test-failover
par_s=$(since "$t")
each_item cleanup-test-failover

echo "plan failover (unplanned) ..." >&2
t=$(now)
job=$(ok POST /plans/bench/failover '{}' | job_of)
wait_job "$job"
plan_fo_s=$(since "$t")
plan_fo_started_s=$(started "$job" "$t")
steps=$(ok GET "/jobs/$job" | json 'len(j["steps"])')

ratio() { "$py" -c "print(f'{$1 / $2:.1f}x')"; }
rows=(
  "plan test failover, request → all started|$plan_test_started_s s|(job done $plan_test_s s)"
  "item by item, one after the other|$seq_s s|$(ratio "$seq_s" "$plan_test_s") the plan's time"
  "item by item, all at once (one job each)|$par_s s|$(ratio "$par_s" "$plan_test_s") the plan's time"
  "plan failover (unplanned, latest), request → all started|$plan_fo_started_s s|(job done $plan_fo_s s; $steps steps)"
  "setup: $machines machines protected|$setup_s s|"
)
echo "plan of $machines machines in $groups groups (none launcher, 1 MiB disks, one source and one target node)"
for r in "${rows[@]}"; do
  IFS='|' read -r a b c <<<"$r"
  if [[ $markdown == 1 ]]; then echo "| $a | $b | $c |"; else printf '%-60s %10s  %s\n' "$a" "$b" "$c"; fi
done
