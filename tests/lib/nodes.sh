# Shared by the multi-node tests: a work directory, a CA and node certificates, node
# configurations, starting and killing `ferry node` processes, and the command interface.
# Source it after setting: ferry (binary), py (Debian's python3), work (a fresh directory),
# and NODES (names, e.g. "a b").
declare -A pid=()
proxy=
writer=
cleanup() {
  for n in "${!pid[@]}"; do kill -KILL "${pid[$n]}" 2>/dev/null || true; done
  [[ -n $proxy ]] && kill -KILL "$proxy" 2>/dev/null || true
  [[ -n $writer ]] && kill -KILL "$writer" 2>/dev/null || true
  wait 2>/dev/null || true
  if [[ -f $work/claimed-ports ]]; then
    while read -r claim; do rmdir "$claim" 2>/dev/null || true; done <"$work/claimed-ports"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for n in $NODES; do echo "--- node $n log (last 30 lines)" >&2; tail -n 30 "$work/$n.log" >&2 || true; done
  exit 1
}
# A port nothing listens on, below the kernel's ephemeral range (32768 and up by default),
# which is where port 0 binds and every outgoing connection of the tests running alongside
# takes its local port: a port from there can be taken between this pick and the bind of the
# daemon it is for. Tests running at the same time could still pick the same port before
# either binds it, so each pick is also claimed (a directory under $TMPDIR/ferry-test-ports,
# made atomically) until cleanup releases it; a claim older than two hours is a killed
# test's, and is taken over.
port_claims=${TMPDIR:-/tmp}/ferry-test-ports
free_port() {
  "$py" - "$port_claims" "$work/claimed-ports" <<'PY'
import os, random, socket, sys, time
claims, record = sys.argv[1], sys.argv[2]
os.makedirs(claims, exist_ok=True)
for _ in range(1000):
    p = random.randint(20000, 32000)
    claim = os.path.join(claims, str(p))
    try:
        os.mkdir(claim)
    except FileExistsError:
        try:
            if time.time() - os.stat(claim).st_mtime < 7200:
                continue
            os.utime(claim)
        except OSError:
            continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        os.rmdir(claim)
        continue
    finally:
        s.close()
    with open(record, "a") as f:
        f.write(claim + "\n")
    print(p)
    break
else:
    raise SystemExit("no free port in 20000-32000")
PY
}
token=test-token-$$

# A CA and a certificate for each node.
(
  cd "$work"
  ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  openssl req -x509 $ec -days 30 -subj /CN=ferry-test-ca -keyout ca.key -out ca.pem
  for n in $NODES; do
    openssl req $ec -subj "/CN=node-$n" -keyout "$n.key" -out "$n.csr"
    printf 'extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$n.ext"
    openssl x509 -req -in "$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile "$n.ext" -out "$n.pem"
  done
) >"$work/openssl.log" 2>&1 || fail "openssl: $(cat "$work/openssl.log")"

declare -A api_port=() link_port=()
for n in $NODES; do
  api_port[$n]=$(free_port)
  link_port[$n]=$(free_port)
  cat >"$work/$n.toml" <<TOML
name = "node-$n"
site = "site-$n"
data_dir = "$n-data"
[listen]
api = "127.0.0.1:${api_port[$n]}"
nbd = "unix://$work/$n.sock"
link = "127.0.0.1:${link_port[$n]}"
[tls]
cert = "$n.pem"
key = "$n.key"
ca = "ca.pem"
[api_auth]
token = "$token"
TOML
done

# api NODE METHOD PATH [JSON]: prints the response body; fails on an HTTP error.
api() {
  local n=$1 method=$2 path=$3 body=${4:-}
  local out code
  local data=()
  [[ $method == GET ]] || data=(--data "$body")
  out=$(curl -sS -X "$method" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        "${data[@]}" -w '\n%{http_code}' "http://127.0.0.1:${api_port[$n]}$path") ||
    fail "curl $method $path on node $n"
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  [[ $code -lt 400 ]] || fail "$method $path on node $n: HTTP $code $out"
  printf '%s\n' "$out"
}
# jq-like: json EXPR reads JSON on stdin and prints the Python expression over it (as j).
json() { "$py" -c "import json,sys; j=json.load(sys.stdin); print($1)"; }

start_node() {
  local n=$1
  "$ferry" node --config "$work/$n.toml" >>"$work/$n.log" 2>&1 &
  pid[$n]=$!
  for _ in $(seq 200); do
    curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:${api_port[$n]}/v1/status" >/dev/null 2>&1 && return 0
    kill -0 "${pid[$n]}" 2>/dev/null || fail "node $n exited at start"
    sleep 0.05
  done
  fail "node $n did not start"
}
kill9_node() { kill -KILL "${pid[$1]}"; wait "${pid[$1]}" 2>/dev/null || true; unset "pid[$1]"; }

# wait_acked SEQ [VOLUME]: until node a's link of VOLUME (disk0) has SEQ durable at the target.
wait_acked() {
  local seq=$1 vol=${2:-disk0} acked
  for _ in $(seq 1200); do
    acked=$(api a GET /v1/status | json "[v for v in j['volumes'] if v['name']=='$vol'][0]['link']['acked_seq']")
    ((acked >= seq)) && return 0
    sleep 0.05
  done
  fail "seq $seq not acknowledged by the target within 60 s (acked $acked): $(api a GET /v1/status)"
}
# mark LABEL [VOLUME]: a crash-consistent marker on node a; prints its seq.
mark() { api a POST "/v1/volumes/${2:-disk0}/markers" "{\"label\": \"$1\"}" | json 'j["seq"]'; }
src_uri="nbd+unix:///disk0?socket=$work/a.sock"
tgt_uri() { echo "nbd+unix:///disk0@$1?socket=$work/b.sock"; }
compare_at() {
  local seq=$1
  qemu-img compare -f raw -F raw "$src_uri" "$(tgt_uri "$seq")" >"$work/compare.log" 2>&1 ||
    fail "target at seq $seq differs from the source: $(cat "$work/compare.log")"
}
replica_ready() {  # replica_ready NAME [NODE]: the target (b) finished its initial sync
  for _ in $(seq 600); do
    api "${2:-b}" GET /v1/status | json "any(r['name']=='$1' and not r['initial_sync']['running'] for r in j['replicas'])" | grep -q True && return 0
    sleep 0.05
  done
  fail "initial sync of $1 did not finish"
}
expect_on() {  # expect_on NODE CODE TEXT METHOD PATH [BODY]
  local n=$1 want=$2 text=$3 method=$4 path=$5 body=${6:-}
  local out
  out=$(curl -sS -X "$method" -H "Authorization: Bearer $token" ${body:+--data "$body"} -w '\n%{http_code}' \
        "http://127.0.0.1:${api_port[$n]}$path")
  [[ ${out##*$'\n'} == "$want" ]] || fail "$method $path on node $n: expected HTTP $want, got: $out"
  [[ $out == *"$text"* ]] || fail "$method $path on node $n: expected '$text' in: $out"
}
sync_finishes() { grep -c 'initial sync finished' "$work/b.log" || true; }

