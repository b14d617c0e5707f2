#!/usr/bin/env bash
# Checks the server API's OpenAPI document (src/api/openapi.yaml) and the validating proxy
# (tests/tools/openapi_proxy.py) without a Ferry server: --check-spec must pass on the document
# and find the faults planted in a broken copy; behind the proxy, a canned upstream answers
# some requests correctly and some with planted faults, and the proxy's report must hold
# exactly the planted violations. Also: requests and answers pass unchanged, keep-alive holds
# one upstream connection per client connection, a chunked answer is passed on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
spec=$here/../src/api/openapi.yaml
proxy=$here/tools/openapi_proxy.py
# The interpreter that has PyYAML and jsonschema (Debian's, when another python3 comes first),
# resolved once: a version manager's shim costs a second for every start.
py=$(python3 -c 'import sys, importlib.util as u
assert u.find_spec("yaml") and u.find_spec("jsonschema")
print(sys.executable)' 2>/dev/null || echo /usr/bin/python3)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# --- a canned upstream and the proxy in front of it ----------------------------------------
cat >"$work/upstream.py" <<'PY'
import http.server, json, sys

T = "2026-11-26T05:06:18Z"
SITE = {"id": "site-1", "name": "primary", "created_at": T}
ERROR = {"error": {"code": "InvalidArgument", "message": "name: expected a string",
                   "action": "send a name"}}
ITEM = {"id": "item-1", "name": "web1", "machine": "mach-1", "state": "FailedOver",
        "health": "Warning", "problems": ["the source site does not answer: check node-1"],
        "direction": "forward", "active_site": "recovery", "source_site": "primary",
        "target_site": "recovery", "source_node": "node-1", "target_node": "node-2",
        "policy": "pol-1", "rpo_seconds": None,
        "allowed_operations": ["change-recovery-point", "commit"],
        "properties": {"target_name": "web1-dr", "cpus": 2, "memory_mib": 2048,
                       "network": "dr", "ip_address": "10.1.0.7"},
        "disks": [{"name": "disk0", "volume": "web1.disk0", "size": 1073741824,
                   "initial_sync": {"percent": 100.0, "eta_seconds": None},
                   "pending_bytes": 4096, "rpo_seconds": None,
                   "uri": "nbd://10.0.0.6:10809/web1.disk0/overlay/failover"}],
        "last_test_failover": None,
        "failover": {"point": "seq:812", "seqs": {"disk0": 812},
                     "uris": {"disk0": "nbd://10.0.0.6:10809/web1.disk0/overlay/failover"}},
        "active_job": None, "created_at": T, "updated_at": T}
JOB = {"id": "job-5", "type": "failover",
       "target": {"kind": "item", "id": "item-1", "name": "web1"},
       "state": "NotStarted", "progress": 0, "cancel_requested": False,
       "allowed_actions": ["cancel"], "created_at": T, "started_at": None, "ended_at": None,
       "error": None,
       "steps": [{"name": "preflight", "title": "Pre-flight checks", "state": "NotStarted",
                  "started_at": None, "ended_at": None, "message": "", "progress": 0}]}
NODE = {"id": "node-3", "name": "node-c", "site": "recovery", "api_url": "http://10.0.0.7:7800",
        "link_address": "10.0.0.7:7801", "nbd": [], "health": "Healthy",
        "last_heartbeat_at": None, "problems": []}
POLICY = {"id": "pol-1", "name": "default", "rpo_threshold_seconds": 60, "retention_hours": 24,
          "app_consistent_interval_seconds": 3600, "crash_consistent_interval_seconds": 5,
          "failback_policy": "pol-1"}

# "METHOD path [X-Case]" -> (status, body, chunked)
CASES = {
    "GET /api/v1/health": (200, '{"ok":true,   "version": "0.1.0"}', False),
    "GET /api/v1/sites": (200, {"items": [SITE], "next_page_token": ""}, False),
    "GET /api/v1/sites/site-1": (200, SITE, False),
    "GET /api/v1/sites/site-2": (200, dict(SITE, id="site-2", name=42), False),
    "GET /api/v1/sites/site-3": (418, ERROR, False),
    "GET /api/v1/items/item-1": (200, ITEM, False),
    "GET /api/v1/jobs/job-9": (404, {"error": {"code": "NotFound", "message": "no job-9"}}, False),
    "GET /api/v1/policies": (200, {"items": [POLICY], "next_page_token": "2"}, True),
    "POST /api/v1/sites bad-name": (400, ERROR, False),
    "POST /api/v1/sites extra-field": (201, dict(SITE, id="site-2", name="dr"), False),
    "POST /api/v1/items/item-1/failover": (202, {"job": JOB}, False),
    "POST /api/v1/nodes/register": (201, {"node": NODE, "secret": "s3"}, False),
}


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        key = f"{self.command} {path}" + (f" {self.headers['X-Case']}" if "X-Case" in self.headers else "")
        with open(sys.argv[2], "a") as log:
            log.write(json.dumps({"port": self.client_address[1], "method": self.command,
                                  "target": self.path, "body": body.decode(),
                                  "auth": self.headers.get("Authorization"),
                                  "x_test": self.headers.get("X-Test")}) + "\n")
        status, payload, chunked = CASES.get(key, (404, ERROR, False))
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "canned")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(data) // 2
            for part in (data[:half], data[half:], b""):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    do_GET = do_POST = answer


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
server.daemon_threads = True
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
PY

wait_for() {  # FILE PATTERN: up to 20 s (ctest may run other tests at once)
  for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "timed out waiting for '$2' in $1"
}
"$py" "$work/upstream.py" "$work/upstream.port" "$work/upstream.log" &
pids+=($!)
wait_for "$work/upstream.port" .
"$py" "$proxy" --spec "$spec" --listen 127.0.0.1:0 --upstream "http://127.0.0.1:$(cat "$work/upstream.port")" \
  --report "$work/report" >"$work/proxy.out" 2>"$work/proxy.err" &
pids+=($!)

# --- the document (while the proxy loads) -------------------------------------------------
"$py" "$proxy" --spec "$spec" --check-spec

# A copy with planted faults: a dangling $ref, an undeclared path parameter, an invalid
# schema, an example that does not match its schema.
"$py" - "$spec" "$work/bad.yaml" <<'PY'
import sys, yaml
load, dump = getattr(yaml, "CSafeLoader", yaml.SafeLoader), getattr(yaml, "CSafeDumper", yaml.SafeDumper)
doc = yaml.load(open(sys.argv[1]), Loader=load)
doc["paths"]["/sites/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
    "$ref": "#/components/schemas/NoSuchSite"}
doc["paths"]["/jobs/{id}/{action}"] = doc["paths"].pop("/jobs/{id}/cancel")
doc["components"]["schemas"]["Percent"]["type"] = "numeric"
doc["components"]["schemas"]["Policy"]["examples"][0]["retention_hours"] = "24"
yaml.dump(doc, open(sys.argv[2], "w"), Dumper=dump)
PY
if "$py" "$proxy" --spec "$work/bad.yaml" --check-spec 2>"$work/bad.out"; then
  fail "--check-spec accepted a broken document"
fi
for want in "get/responses/200/content/application~1json/schema: \$ref does not resolve: #/components/schemas/NoSuchSite" \
            "paths/jobs/{id}/{action}/post: path parameter 'action' is not declared" \
            "components/schemas/Percent: not a valid 2020-12 schema" \
            "components/schemas/Policy: example 0 does not validate: \$.retention_hours: '24' is not of type 'integer'"; do
  grep -qF "$want" "$work/bad.out" || { cat "$work/bad.out" >&2; fail "--check-spec missed: $want"; }
done
[[ $(wc -l <"$work/bad.out") == 4 ]] || { cat "$work/bad.out" >&2; fail "--check-spec: not 4 problems"; }

# --- exchanges through the proxy ----------------------------------------------------------
wait_for "$work/proxy.out" "^listening on "
base="http://127.0.0.1:$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/proxy.out")/api/v1"
: >"$work/report"
c() { curl -sS --max-time 20 "$@"; }
auth=(-H "Authorization: Bearer api-token")

# One client connection for eight requests (keep-alive), valid answers and planted faults.
codes=$(c "${auth[@]}" -w '%{http_code} ' \
  -o /dev/null "$base/sites/site-1" -o /dev/null "$base/items/item-1" \
  -o /dev/null "$base/sites/site-2" -o /dev/null "$base/sites/site-3" \
  -o /dev/null "$base/jobs/job-9" -o /dev/null "$base/nope" \
  -o "$work/policies" "$base/policies" -o /dev/null "$base/sites?limit=5000")
[[ $codes == "200 200 200 418 404 404 200 200 " ]] || fail "statuses through the proxy: $codes"

# Answers pass unchanged: byte for byte, with the upstream's headers.
c -i "$base/health" | tr -d '\r' >"$work/health"
grep -qx 'X-Upstream: canned' "$work/health" || fail "upstream header lost"
[[ $(tail -n 1 "$work/health") == '{"ok":true,   "version": "0.1.0"}' ]] || fail "body changed: $(tail -n 1 "$work/health")"

c -o /dev/null "$base/sites"                                               # no token
c "${auth[@]}" -o /dev/null -H 'X-Case: bad-name' --json '{"name": 5}' "$base/sites"
c "${auth[@]}" -o /dev/null -H 'X-Case: extra-field' --json '{"name": "dr", "colour": "red"}' "$base/sites"
c -o /dev/null --json '{"token": "t1", "name": "node-c", "api_url": "http://10.0.0.7:7800",
  "api_token": "", "link_address": "10.0.0.7:7801", "nbd": []}' "$base/nodes/register"
body='{"point":  "latest", "planned": true}'
c "${auth[@]}" -o /dev/null -H 'X-Test: abc' -H 'Content-Type: application/json' \
  --data-binary "$body" "$base/items/item-1/failover"

# What the upstream saw, and the report: exactly the planted violations, nothing for the
# valid exchanges (site-1, item-1, policies, health, the refused bad name, register, failover).
"$py" - "$work" "$body" <<'PY' || { cat "$work/proxy.err" >&2; fail "see above"; }
import json, sys
work, body = sys.argv[1], sys.argv[2]
seen = [json.loads(line) for line in open(f"{work}/upstream.log")]
assert len(seen) == 14, f"upstream saw {len(seen)} requests, not 14"
assert len({s["port"] for s in seen[:8]}) == 1, "keep-alive: the first eight requests used several upstream connections"
assert seen[7]["target"] == "/api/v1/sites?limit=5000", f"query not forwarded: {seen[7]}"
assert json.load(open(f"{work}/policies"))["next_page_token"] == "2", "chunked answer not passed on"
last = seen[-1]
assert last == dict(last, method="POST", target="/api/v1/items/item-1/failover", body=body,
                    auth="Bearer api-token", x_test="abc"), f"request changed on the way: {last}"

want = [
    ("GET", "/api/v1/sites/site-2", 200, "response body: $.name: 42 is not of type 'string'"),
    ("GET", "/api/v1/sites/site-3", 418, "undocumented status 418"),
    ("GET", "/api/v1/jobs/job-9", 404, "response body: $.error: 'action' is a required property"),
    ("GET", "/api/v1/nope", 404, "undocumented route"),
    ("GET", "/api/v1/sites", 200, "query parameter 'limit': $: 5000 is greater than the maximum of 1000"),
    ("GET", "/api/v1/sites", 200, "answered 200 to a request without a bearer token"),
    ("POST", "/api/v1/sites", 201, "request body: $: Additional properties are not allowed ('colour' was unexpected)"),
]
got = [json.loads(line) for line in open(f"{work}/report")]
rest = list(got)
for method, path, status, problem in want:
    hits = [g for g in rest if g == {"method": method, "path": path, "status": status, "problem": problem}]
    if len(hits) != 1:
        sys.exit(f"report: expected once, found {len(hits)} times: {method} {path} {status} {problem}\n"
                 + "\n".join(map(json.dumps, got)))
    rest.remove(hits[0])
if rest:
    sys.exit("report: unexpected violations:\n" + "\n".join(map(json.dumps, rest)))
PY
echo "ok: openapi document and validating proxy"
