# Shared by the control-plane tests: `ferry server` (SQLite, in $work/server), calls to its REST
# API, jobs, and the enrollment of nodes a (site "primary") and b (site "recovery").
# Source it after tests/lib/nodes.sh (with NODES="a b"). After start_server, set url to where
# the calls go: the server itself (http://127.0.0.1:$server_port) or a proxy in front of it.
server_pid=
server_port=$(free_port)
stoken=
url=
stop_server() {
  if [[ -n $server_pid ]]; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=
}
api_proxy_pid=
stop_api_proxy() { [[ -z $api_proxy_pid ]] || kill -KILL "$api_proxy_pid" 2>/dev/null || true; }
trap 'stop_server; stop_api_proxy; cleanup' EXIT
show_logs() { echo "--- server log" >&2; tail -n 40 "$work/server.log" >&2 || true; }
node_fail() { :; }
eval "node_$(declare -f fail)"
fail() { show_logs; node_fail "$@"; }

# start_server [VAR=VALUE...]: (re)starts the server on the same store and port, with VARs
# in its environment (FERRY_CRASH_AT, FERRY_HOLD_AT), and waits until it answers.
start_server() {
  env "$@" "$ferry" server --data "$work/server" --listen "127.0.0.1:$server_port" >>"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    if curl -sf "http://127.0.0.1:$server_port/api/v1/health" >/dev/null 2>&1; then
      [[ -n $stoken ]] || stoken=$(cat "$work/server/api-token")
      return 0
    fi
    # With crash points set, a resumed job may kill the server before it answers.
    if ! kill -0 "$server_pid" 2>/dev/null && [[ $* == *FERRY_CRASH_AT* ]]; then return 0; fi
    sleep 0.05
  done
  fail "ferry server did not start"
}

# call METHOD PATH [JSON]: the response body in $work/resp, the HTTP status in $status.
status=0
call() {
  local method=$1 path=$2 body=${3:-}
  local data=()
  [[ -z $body ]] || data=(--data "$body")
  status=$(curl -sS -X "$method" -H "Authorization: Bearer $stoken" -H 'Content-Type: application/json' \
           "${data[@]}" -o "$work/resp" -w '%{http_code}' "$url/api/v1$path") || fail "curl $method $path"
}
ok() {  # ok METHOD PATH [JSON]: prints the body; fails on an HTTP error
  call "$@"
  [[ $status -lt 400 ]] || { show_logs; fail "$1 $2: HTTP $status $(cat "$work/resp")"; }
  cat "$work/resp"
}
refused() {  # refused WANT_STATUS WANT_CODE METHOD PATH [JSON]
  local want=$1 code=$2
  shift 2
  call "$@"
  [[ $status == "$want" ]] || fail "$1 $2 answered $status, want $want: $(cat "$work/resp")"
  [[ $(json 'j["error"]["code"]' <"$work/resp") == "$code" ]] || fail "$1 $2: code is not $code: $(cat "$work/resp")"
}
# wait_job ID [STATE]: until the job is final or suspended; fails unless it reached STATE.
wait_job() {
  local id=$1 want=${2:-Succeeded} state
  for _ in $(seq 1200); do
    state=$(ok GET "/jobs/$id" | json 'j["state"]')
    case $state in Succeeded | Failed | Cancelled | Suspended) break ;; esac
    sleep 0.1
  done
  [[ $state == "$want" ]] || { show_logs; fail "job $id is $state, want $want: $(ok GET "/jobs/$id")"; }
}
job_of() { json 'j["job"]["id"]'; }
item_state() { ok GET /items/item-1 | json 'j["state"]'; }

# enroll_nodes: sites "primary" and "recovery", and nodes a and b enrolled there with one-time
# tokens (the last one stays in $etoken) and registered with the server.
etoken=
enroll_nodes() {
  local n site
  ok POST /sites '{"name": "primary"}' >/dev/null
  ok POST /sites '{"name": "recovery"}' >/dev/null
  for n in a b; do
    site=$([[ $n == a ]] && echo primary || echo recovery)
    etoken=$(ok POST /nodes/enrollments "{\"site\": \"$site\"}" | json 'j["token"]')
    sed -i "s/^site = .*/site = \"$site\"/" "$work/$n.toml"
    printf '[server]\nurl = "%s"\nenroll_token = "%s"\n' "http://127.0.0.1:$server_port" "$etoken" >>"$work/$n.toml"
    start_node $n
  done
  for _ in $(seq 200); do
    [[ $(ok GET /nodes | json 'len(j["items"])') == 2 ]] && break
    sleep 0.1
  done
  [[ $(ok GET /nodes | json 'sorted(n["name"] for n in j["items"])') == "['node-a', 'node-b']" ]] ||
    fail "the nodes did not register: $(ok GET /nodes)"
}

# start_api_proxy: a proxy in front of the server that checks every exchange against
# src/api/openapi.yaml (tests/tools/openapi_proxy.py); points url at it. It outlives server
# restarts (same port). check_api_proxy fails the test if any exchange did not match.
start_api_proxy() {
  local port
  port=$(free_port)
  "$py" "$here/tools/openapi_proxy.py" --spec "$here/../src/api/openapi.yaml" --listen "127.0.0.1:$port" \
    --upstream "http://127.0.0.1:$server_port" --report "$work/openapi.report" >"$work/proxy.log" 2>&1 &
  api_proxy_pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null 2>&1 && break; sleep 0.1; done
  url="http://127.0.0.1:$port"
}
check_api_proxy() {
  if [[ -s $work/openapi.report ]]; then
    cat "$work/openapi.report" >&2
    fail "the server does not match src/api/openapi.yaml"
  fi
}
