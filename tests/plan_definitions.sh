#!/usr/bin/env bash
# Recovery-plan definitions end to end (docs/plans.md): `ferry server` (SQLite) and two
# `ferry node` processes, every API call through the proxy that checks it against
# src/api/openapi.yaml. The node's script routes (POST /v1/run, /v1/run/check); plans created,
# listed, shown, replaced and deleted through the REST API and the CLI; every kind of bad
# definition refused with a 4xx naming the field and nothing stored; readiness reporting a
# machine without an item, a missing script (on a node), an unreachable target node, then a
# ready plan, with `ferry plan readiness`'s exit codes; a plan of 1,000 machines created and
# shown (timings printed).
set -euo pipefail
ferry=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
work=$(mktemp -d /tmp/ferry-plans.XXXXXX)
NODES="a b"
source "$here/lib/nodes.sh"
source "$here/lib/server.sh"
start_server
start_api_proxy
direct="http://127.0.0.1:$server_port"

# message: the last answer's error message.
message() { json 'j["error"]["message"]' <"$work/resp"; }
# refused_with STATUS CODE TEXT METHOD PATH JSON: refused, and the message holds TEXT.
refused_with() {
  local text=$3
  refused "$1" "$2" "${@:4}"
  [[ $(message) == *"$text"* ]] || fail "$4 $5: the message does not say '$text': $(cat "$work/resp")"
}
plan_count() { ok GET /plans | json 'len(j["items"])'; }

echo "== inventory: sites, nodes, machines; web1 protected"
enroll_nodes
ok POST /policies '{"name": "fast", "rpo_threshold_seconds": 30, "crash_consistent_interval_seconds": 1, "app_consistent_interval_seconds": 0}' >/dev/null
machine() {  # machine NAME SITE NODE
  ok POST /machines "{\"name\": \"$1\", \"site\": \"$2\", \"node\": \"$3\", \"disks\": [{\"name\": \"disk0\", \"path\": \"$work/$1.img\", \"size\": 16777216}]}" >/dev/null
}
machine web1 primary node-a
machine db1 primary node-a
machine app1 primary node-a
machine far1 recovery node-b
job=$(ok POST /items '{"machine": "web1", "target_site": "recovery", "policy": "fast"}' | job_of)
wait_job "$job"

echo "== the node runs plan scripts: POST /v1/run, POST /v1/run/check"
out=$(api b POST /v1/run '{"command": "echo \"$FERRY_PLAN\"; cat \"$FERRY_CONTEXT\"; exit 3", "env": {"FERRY_PLAN": "shop"}, "context": {"group": {"index": 1, "name": "db"}}, "timeout_ms": 10000}')
[[ $(json 'j["exit_code"]' <<<"$out") == 3 && $(json 'j["timed_out"]' <<<"$out") == False ]] || fail "run: $out"
[[ $(json 'j["output"].split("\n")[0]' <<<"$out") == shop ]] || fail "run: no FERRY_PLAN: $out"
[[ $(json 'json.loads(j["output"].split("\n", 1)[1])["group"]["name"]' <<<"$out") == db ]] || fail "run: no context: $out"
[[ -z $(ls -A "$work/b-data/run") ]] || fail "run: the context file stayed: $(ls "$work/b-data/run")"
out=$(api b POST /v1/run '{"command": "sleep 5", "timeout_ms": 300}')
[[ $(json 'j["timed_out"]' <<<"$out") == True && $(json 'j["exit_code"]' <<<"$out") == -1 ]] || fail "run timeout: $out"
[[ $(api b POST /v1/run/check '{"command": "FOO=1 sh -c true"}' | json 'j["present"]') == True ]] || fail "sh not found"
out=$(api b POST /v1/run/check "{\"command\": \"$work/scripts/stop.sh --fast\"}")
[[ $(json 'j["present"]' <<<"$out") == False && $(json 'j["message"]' <<<"$out") == *"$work/scripts/stop.sh"* ]] ||
  fail "check of a missing script: $out"
code=$(curl -sS -o "$work/node.resp" -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
  --data '{"command": "true", "timeout_ms": 0}' "http://127.0.0.1:${api_port[b]}/v1/run")
[[ $code == 400 && $(json 'j["error"]["message"]' <"$work/node.resp") == *timeout_ms* ]] ||
  fail "run with timeout_ms 0: $code $(cat "$work/node.resp")"
[[ $(api b GET /v1/status | json 'j["data_free_bytes"] > 0') == True ]] || fail "no data_free_bytes in the node's status"

echo "== create, get, list, replace, delete"
mkdir -p "$work/scripts"
cat >"$work/shop.json" <<JSON
{"name": "shop", "description": "web shop", "source_site": "primary", "target_site": "recovery",
 "groups": [{"name": "db", "machines": ["db1"],
             "pre": [{"kind": "script", "name": "stop-app", "command": "$work/scripts/stop.sh --fast",
                      "node": "node-b", "on_failure": "stop", "types": ["planned", "test"]}],
             "post": [{"kind": "manual", "name": "call-dba", "instructions": "Ask the DBA to check replication lag",
                       "directions": ["forward"]}]},
            {"name": "web", "machines": ["web1"]}]}
JSON
call POST /plans "$(cat "$work/shop.json")"
[[ $status == 201 ]] || fail "create: HTTP $status $(cat "$work/resp")"
cp "$work/resp" "$work/shop.created"
"$py" - "$work/shop.created" <<'PY' || fail "the created plan is not as defined: $(cat "$work/shop.created")"
import json, sys
p = json.load(open(sys.argv[1]))
assert p["id"] == "plan-1" and p["name"] == "shop" and p["machine_count"] == 2, p
assert [g["name"] for g in p["groups"]] == ["db", "web"] and [g["index"] for g in p["groups"]] == [1, 2]
assert p["groups"][0]["machines"] == [{"machine": "db1", "item": None, "state": None}], p["groups"][0]
assert p["groups"][1]["machines"] == [{"machine": "web1", "item": "item-1", "state": "Protected"}], p["groups"][1]
a = p["groups"][0]["pre"][0]
assert a["node"] == "node-b" and a["timeout_s"] == 300 and a["types"] == ["test", "planned"], a
assert a["directions"] == ["forward", "reverse"] and a["on_failure"] == "stop", a
m = p["groups"][0]["post"][0]
assert m == {"kind": "manual", "name": "call-dba", "instructions": "Ask the DBA to check replication lag",
             "types": ["test", "planned", "unplanned"], "directions": ["forward"]}, m
assert p["active_job"] is None and p["last_operation"] is None
PY
ok GET /plans/shop >"$work/shop.got"
cmp -s <(json 'json.dumps(j, sort_keys=True)' <"$work/shop.got") <(json 'json.dumps(j, sort_keys=True)' <"$work/shop.created") ||
  fail "GET /plans/shop differs from what POST answered"
[[ $(ok GET /plans | json '[p["name"] for p in j["items"]]') == "['shop']" ]] || fail "list: $(ok GET /plans)"
second=$(sed 's/"name": "shop"/"name": "shop-b"/' "$work/shop.json")
ok POST /plans "$second" >/dev/null
[[ $(ok GET '/plans?limit=1' | json 'j["next_page_token"]') == 1 ]] || fail "list is not paged"
[[ $(ok GET '/plans?limit=1&page_token=1' | json 'j["items"][0]["name"]') == shop-b ]] || fail "second page"
replaced=$(json 'json.dumps(dict(j, groups=[{"name": "all", "machines": ["web1", "app1", "db1"]}], description="v2"))' \
  <"$work/shop.json")
ok PUT /plans/plan-2 "$(sed 's/"name": "shop"/"name": "shop-b"/' <<<"$replaced")" >"$work/resp2"
[[ $(json '[m["machine"] for m in j["groups"][0]["machines"]]' <"$work/resp2") == "['web1', 'app1', 'db1']" ]] ||
  fail "replace: $(cat "$work/resp2")"
[[ $(ok DELETE /plans/shop-b | json 'j["ok"]') == True ]] || fail "delete"
refused 404 NotFound GET /plans/shop-b
refused 404 NotFound DELETE /plans/shop-b

echo "== bad definitions are refused naming the field, and store nothing"
# bad EXPR: the shop definition changed by a Python expression over it (d).
bad() { json "json.dumps((lambda d: ($1, d)[1])(j))" <"$work/shop.json"; }
refused_with 400 InvalidArgument "machine 'web1' is in group 'db' and in group 'web'" POST /plans \
  "$(bad 'd.update(name="x1") or d["groups"][0]["machines"].append("web1")')"
refused_with 404 NotFound "group 'web': field 'machines': no machine 'ghost'" POST /plans \
  "$(bad 'd.update(name="x2") or d["groups"][1]["machines"].append("ghost")')"
refused_with 400 InvalidArgument "machine 'far1' is at site 'recovery', not at the plan's source site 'primary'" \
  POST /plans "$(bad 'd.update(name="x3") or d["groups"][1]["machines"].append("far1")')"
refused_with 400 InvalidArgument "group 'db' pre action 'stop-app': field 'timeout_s' must be from 1 to 86400" \
  POST /plans "$(bad 'd.update(name="x4") or d["groups"][0]["pre"][0].update(timeout_s=0)')"
refused_with 400 InvalidArgument "group 'db' post action 'call-dba': unknown field 'retries'" \
  POST /plans "$(bad 'd.update(name="x5") or d["groups"][0]["post"][0].update(retries=2)')"
refused_with 404 NotFound "group 'db' pre action 'stop-app': field 'node': no node 'node-z'" \
  POST /plans "$(bad 'd.update(name="x6") or d["groups"][0]["pre"][0].update(node="node-z")')"
refused_with 400 InvalidArgument "field 'kind' must be 'script' or 'manual'" \
  POST /plans "$(bad 'd.update(name="x7") or d["groups"][0]["pre"][0].update(kind="robot")')"
refused_with 409 AlreadyExists "a recovery plan named 'shop' exists" POST /plans "$(cat "$work/shop.json")"
refused_with 400 InvalidArgument "field 'types' holds \"drill\"" POST /plans \
  "$(bad 'd.update(name="x8") or d["groups"][0]["pre"][0].update(types=["drill"])')"
refused_with 400 InvalidArgument "two groups are named 'db'" POST /plans \
  "$(bad 'd.update(name="x9") or d["groups"][1].update(name="db")')"
refused_with 400 InvalidArgument "unknown field 'colour'" POST /plans "$(bad 'd.update(colour="red")')"
[[ $(plan_count) == 1 ]] || fail "a refused definition was stored: $(ok GET /plans)"

echo "== readiness: no item, a missing script on a node, then an unreachable node"
ok GET /plans/shop/readiness >"$work/ready.json"
"$py" - "$work/ready.json" "$work/scripts/stop.sh" <<'PY' || fail "readiness: $(cat "$work/ready.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["plan"] == "plan-1" and r["ready"] is False and r["machines"] == 2, r
checks = {(p["check"], p.get("machine")) for p in r["problems"]}
assert ("item", "db1") in checks, checks
script = [p for p in r["problems"] if p["check"] == "script"]
assert len(script) == 1 and sys.argv[2] in script[0]["message"] and "node 'node-b'" in script[0]["message"], script
assert "group 1 'db' pre action 'stop-app'" in script[0]["message"], script
assert not any(p["check"] in ("node", "network", "space", "state") for p in r["problems"]), r["problems"]
PY
# The script is present once installed on node-b (both nodes share this machine here).
printf '#!/bin/sh\nexit 0\n' >"$work/scripts/stop.sh"
chmod +x "$work/scripts/stop.sh"
[[ $(ok GET /plans/shop/readiness | json '[p["check"] for p in j["problems"]]') == *script* ]] &&
  fail "the installed script is still reported: $(ok GET /plans/shop/readiness)"
kill9_node b
ok GET /plans/shop/readiness >"$work/ready.json"
"$py" - "$work/ready.json" <<'PY' || fail "readiness with node b down: $(cat "$work/ready.json")"
import json, sys
r = json.load(open(sys.argv[1]))
node = [p for p in r["problems"] if p["check"] == "node"]
assert len(node) == 1 and "target node 'node-b'" in node[0]["message"] and "does not answer" in node[0]["message"], node
script = [p for p in r["problems"] if p["check"] == "script"]
assert len(script) == 1 and "cannot check its program" in script[0]["message"], script
PY
start_node b

echo "== the CLI"
unset FERRY_CONFIG
export FERRY_SERVER=$url FERRY_TOKEN=$stoken XDG_CONFIG_HOME=$work/xdg
cli() {  # cli WANT_EXIT ARGS...: runs ferry ARGS, output in $work/cli.out
  local want=$1 rc=0
  shift
  "$ferry" "$@" >"$work/cli.out" 2>"$work/cli.err" || rc=$?
  [[ $rc == "$want" ]] || fail "ferry $*: exit $rc, want $want: $(cat "$work/cli.out" "$work/cli.err")"
}
cli 0 plan list
grep -q '^plan-1 *shop *primary *recovery *2 *2 ' "$work/cli.out" || fail "plan list: $(cat "$work/cli.out")"
cli 0 plan show shop
for want in "sites: *primary -> recovery" "1 db *pre *script stop-app: $work/scripts/stop.sh --fast (on node-b; 300s; on failure stop; test,planned)" \
            "1 db *start *db1 *- *-" "1 db *post *manual call-dba: Ask the DBA" "2 web *start *web1 *item-1 *Protected"; do
  grep -q "$want" "$work/cli.out" || fail "plan show: no '$want': $(cat "$work/cli.out")"
done
cli 11 plan readiness shop
grep -q "NOT READY" "$work/cli.out" && grep -q "machine 'db1' has no replicated item" "$work/cli.out" ||
  fail "plan readiness: $(cat "$work/cli.out")"
cli 0 plan create solo --source-site primary --target-site recovery --group web:web1 --description "just web1"
[[ $(cat "$work/cli.out") == plan-3 ]] || fail "plan create printed $(cat "$work/cli.out")"
# A ready plan: web1 Protected and Healthy, its node answers (health may take a moment).
rc=1
for _ in $(seq 60); do
  rc=0
  "$ferry" plan readiness solo >"$work/cli.out" 2>&1 || rc=$?
  [[ $rc == 0 ]] && break
  sleep 0.5
done
[[ $rc == 0 ]] && grep -q "solo: ready" "$work/cli.out" || fail "plan solo is not ready (exit $rc): $(cat "$work/cli.out")"
cli 0 plan readiness solo -o json
[[ $(json 'j["ready"]' <"$work/cli.out") == True ]] || fail "readiness json: $(cat "$work/cli.out")"
json 'json.dumps(dict(j, name="solo", groups=[{"name": "a", "machines": ["app1"]}, {"name": "w", "machines": ["web1"]}]))' \
  <"$work/shop.json" >"$work/solo.json"
cli 0 plan replace solo --file "$work/solo.json"
cli 0 plan show solo -o json
[[ $(json '[g["name"] for g in j["groups"]]' <"$work/cli.out") == "['a', 'w']" ]] || fail "replace: $(cat "$work/cli.out")"
cli 10 plan create dup --source-site primary --target-site recovery --group a:web1 --group b:web1
grep -q "machine 'web1' is in group 'a' and in group 'b'" "$work/cli.err" || fail "create dup: $(cat "$work/cli.err")"
cli 3 plan show nope
cli 3 plan readiness nope
cli 0 plan delete solo
cli 3 plan show solo

echo "== a plan of 1,000 machines"
"$py" - "$direct" "$stoken" "$work" <<'PY' || fail "1,000 machines"
import http.client, json, sys, time, urllib.parse
base, token, work = sys.argv[1], sys.argv[2], sys.argv[3]
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
def call(method, path, body=None):
    c.request(method, "/api/v1" + path, body=None if body is None else json.dumps(body), headers=h)
    r = c.getresponse()
    data = r.read()
    return r.status, json.loads(data) if data else None
for i in range(1000):
    s, b = call("POST", "/machines", {"name": f"m{i}", "site": "primary", "node": "node-a",
                                      "disks": [{"name": "disk0", "path": f"/srv/m{i}.img", "size": 4096}]})
    assert s == 201, (s, b)
groups = [{"name": f"g{g}", "machines": [f"m{g * 100 + i}" for i in range(100)],
           "pre": [{"kind": "manual", "name": "go", "instructions": f"begin group {g}"}]} for g in range(10)]
t0 = time.monotonic()
s, created = call("POST", "/plans", {"name": "big", "source_site": "primary", "target_site": "recovery",
                                     "groups": groups})
t1 = time.monotonic()
assert s == 201, (s, created)
s, got = call("GET", "/plans/big")
t2 = time.monotonic()
assert s == 200 and got == created and got["machine_count"] == 1000, got.get("machine_count")
assert [m["machine"] for m in got["groups"][9]["machines"]][:2] == ["m900", "m901"]
s, ready = call("GET", "/plans/big/readiness")
t3 = time.monotonic()
assert s == 200 and ready["machines"] == 1000 and len([p for p in ready["problems"] if p["check"] == "item"]) == 1000
print(f"1,000-machine plan: create {1000 * (t1 - t0):.0f} ms, get {1000 * (t2 - t1):.0f} ms, "
      f"readiness {1000 * (t3 - t2):.0f} ms")
assert t1 - t0 < 5 and t2 - t1 < 5, "too slow"
PY
cli 0 plan show big
[[ $(grep -c ' start ' "$work/cli.out") == 1000 ]] || fail "plan show big: not 1,000 machines"

echo "== every exchange matched the OpenAPI document"
check_api_proxy
echo "plan definitions: OK"
