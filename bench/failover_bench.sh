#!/usr/bin/env bash
# failover_bench.sh: the failover benchmark of the control-plane issue. Ferry's failover to
# `latest-processed` against a copy-based recovery of the same point, in the same run, with the
# ratio. A benchmark, not a test: it exits 0 whatever the figures (non-zero only if something
# could not run).
#
#   Requirement: failover to latest-processed of a machine with a 10 GiB disk and 1 GiB of
#   journal; time from the request to the recovered disk serving reads <= 2 s.
#
# What one round does (a fresh stack each round):
#   1. `ferry up` in the background (a server and a node for each of the sites primary and
#      recovery, on loopback, with their own data directory and ports), a sparse disk image
#      of --disk-gib GiB, a machine with that disk, protected toward `recovery` through the
#      REST API (policy: a crash-consistent marker every second); waits for Protected.
#   2. fio writes --journal-mib MiB (random --bs writes, spread over the disk, buffers 50%
#      compressible) through the source node's splitter NBD export, then the script waits until
#      the target has acknowledged the source's last seq. It reports the journal the target
#      holds (its replica's journal_bytes and records).
#   3. Timed with a monotonic clock (Python's time.monotonic): POST /items/ID/failover
#      {"point": "latest-processed"}, GET /jobs/JOB every --poll-ms until Succeeded, GET
#      /items/ID for the recovered disk's NBD URI, connect (libnbd) and read its first MiB.
#      Each request opens a new connection, as curl and the CLI do (a kept-alive connection
#      adds about 40 ms per answer: the server lacks TCP_NODELAY; printed as an info row).
#      Also printed: the job's own times (created, started, each step, ended, from the job's
#      timestamps), so that the time can be attributed.
#   4. The peer, a copy-based recovery of the same point (the seq the failover resolved): the
#      target node's read-only view of that seq (POST /v1/replicas/VOL/views) copied by
#      `nbdcopy` to a local raw file (sparse; block-status aware, parallel), then the first
#      MiB read from the file. The ratio is the peer's time over Ferry's (how many times
#      sooner Ferry serves reads).
#      For information: `qemu-img convert -O raw` of the same view, stopped after
#      --qemu-img-limit seconds. It is not the peer because it is slowed by Ferry's NBD server:
#      qemu asks for block status with NBD_CMD_FLAG_REQ_ONE over the rest of the disk, one
#      extent per request, and the view computes every extent of the requested range each
#      time (ViewExport::BlockStatus), so every extent costs a request that scans up to the
#      rest of the disk (an info row times one). Also `qemu-img
#      convert` of nbdcopy's plain copy to another file: the copy without Ferry in the way.
#   Data check (not timed): the first MiB and 64 random MiB of the recovered disk, the source
#   disk and the two plain copies are equal.
#
# Usage: bench/failover_bench.sh BUILD_DIR [options]      (BUILD_DIR holds the `ferry` binary)
#   --disk-gib N       the disk's size in GiB (default 10)
#   --journal-mib N    MiB written through the splitter before the failover (default 1024)
#   --bs RANGE         fio's --bsrange of the writes (default 4k-64k; e.g. 1m-1m)
#   --poll-ms N        how often the job is polled (default 20)
#   --rounds N         rounds, each on a fresh stack; the table shows medians (default 1)
#   --qemu-img-limit S stop `qemu-img convert` of the view after S seconds (default 60; 0: skip)
#   --keep             keep the scratch directory (logs, the stack's data) on exit
#   --markdown         the table as Markdown rows for bench/RESULTS.md (or FERRY_BENCH_MARKDOWN=1)
# Quick smoke run (about 20 s): bench/failover_bench.sh build --disk-gib 1 --journal-mib 64
# A full round (10 GiB, 1 GiB) took 2.5 to 3.5 minutes on 2 shared vCPUs, 60 s of it the
# qemu-img attempt. The scratch directory (under FERRY_BENCH_TMP, default /var/tmp; not tmpfs)
# holds about 1 GiB each of: the source disk's data, its pending log, the target's journal and
# the two plain copies.
# Everything it starts is stopped, and the scratch directory removed, when it exits.
set -euo pipefail

say() { printf '%s\n' "$*" >&2; }
usage() { sed -n '/^# Usage:/,/^# Quick/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 1 && $1 != -* ]] || usage
build=$(realpath "$1")
shift
disk_gib=10 journal_mib=1024 bs=4k-64k poll_ms=20 rounds=1 qemu_limit=60 keep='' markdown=${FERRY_BENCH_MARKDOWN:-}
while [[ $# -gt 0 ]]; do
  case $1 in
    --disk-gib) disk_gib=$2; shift 2 ;;
    --journal-mib) journal_mib=$2; shift 2 ;;
    --bs) bs=$2; shift 2 ;;
    --poll-ms) poll_ms=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --qemu-img-limit) qemu_limit=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --markdown) markdown=1; shift ;;
    *) usage ;;
  esac
done
[[ $disk_gib =~ ^[1-9][0-9]*$ && $journal_mib =~ ^[1-9][0-9]*$ && $poll_ms =~ ^[1-9][0-9]*$ && $rounds =~ ^[1-9][0-9]*$ &&
      $qemu_limit =~ ^[0-9]+$ ]] ||
  usage
((journal_mib < disk_gib * 1024)) || { say "failover_bench: --journal-mib must be below the disk's size"; exit 2; }
ferry=$build/ferry
[[ -x $ferry ]] || { say "failover_bench: no $ferry: build it first (ninja -C $build ferry)"; exit 2; }
py=/usr/bin/python3  # Debian's, with libnbd's Python module (python3-libnbd)
for t in "$py" fio qemu-img nbdcopy curl; do
  command -v "$t" >/dev/null || { say "failover_bench: $t is missing (tools/install-deps)"; exit 2; }
done
"$py" -c 'import nbd' 2>/dev/null || { say "failover_bench: $py lacks the nbd module (python3-libnbd)"; exit 2; }
disk_bytes=$((disk_gib << 30))
journal_bytes=$((journal_mib << 20))

work=$(mktemp -d "${FERRY_BENCH_TMP:-/var/tmp}/ferry-failover-bench.XXXXXX")
if [[ $(stat -f -c %T "$work") == tmpfs ]]; then
  rmdir "$work"
  say "failover_bench: ${FERRY_BENCH_TMP:-/var/tmp} is tmpfs; set FERRY_BENCH_TMP to a directory on a disk"
  exit 2
fi
up_pid=
up_children=()
fio_pid=
stop_stack() {  # SIGTERM to `ferry up` (it stops its server and nodes); SIGKILL after 20 s
  [[ -n $up_pid ]] || return 0
  kill -TERM "$up_pid" 2>/dev/null || true
  for _ in $(seq 200); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$up_pid" 2>/dev/null; then
    say "failover_bench: ferry up ignored SIGTERM for 20 s; killing it and its children"
    kill -KILL "$up_pid" 2>/dev/null || true
  fi
  wait "$up_pid" 2>/dev/null || true
  # Its children are in process groups of their own: make sure none outlives it.
  for p in "${up_children[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  up_pid=
  up_children=()
}
# shellcheck disable=SC2317  # called by the trap
bench_cleanup() {
  [[ -n $fio_pid ]] && kill -KILL "$fio_pid" 2>/dev/null
  stop_stack
  if [[ -n $keep ]]; then
    say "failover_bench: kept $work"
  else
    rm -rf "$work"
  fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
fail() {
  say "failover_bench: FAILED: $*"
  for l in "$work"/round*/*.log; do
    [[ -f $l ]] || continue
    say "--- $l (last 20 lines)"
    tail -n 20 "$l" >&2
  done
  exit 1
}
# A private copy of the binary: other work may rebuild it while this runs.
binary_time=$(date -u -r "$ferry" +%Y-%m-%dT%H:%MZ)
cp "$ferry" "$work/ferry"
ferry=$work/ferry
started=$EPOCHSECONDS
load_start=$(cut -d' ' -f1 /proc/loadavg)

# json EXPR: the Python expression over the JSON on stdin (as j).
json() { "$py" -c "import json,sys; j=json.load(sys.stdin); print($1)"; }
# call METHOD PATH [JSON]: the server's answer; fails on an HTTP error.
call() {
  local method=$1 path=$2 body=${3:-} out code
  local data=()
  [[ -z $body ]] || data=(--data "$body")
  out=$(curl -sS -X "$method" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        "${data[@]}" -w '\n%{http_code}' "$url/api/v1$path") || fail "curl $method $path"
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  [[ $code -lt 400 ]] || fail "$method $path: HTTP $code $out"
  printf '%s\n' "$out"
}
# node URL METHOD PATH [JSON]: a node's command interface (ferry up sets no token on it).
node() {
  local base=$1 method=$2 path=$3 body=${4:-}
  local data=()
  [[ -z $body ]] || data=(--data "$body")
  curl -sSf -X "$method" -H 'Content-Type: application/json' "${data[@]}" "$base$path" ||
    fail "$method $path on $base"
}
# wait_job ID TIMEOUT_S: until the job is Succeeded; fails on any other final state.
wait_job() {
  local id=$1 deadline=$((EPOCHSECONDS + $2)) state
  while :; do
    state=$(call GET "/jobs/$id" | json 'j["state"]')
    case $state in
      Succeeded) return 0 ;;
      Failed | Cancelled | Suspended) fail "job $id is $state: $(call GET "/jobs/$id")" ;;
    esac
    ((EPOCHSECONDS < deadline)) || fail "job $id not done within $2 s: $(call GET "/jobs/$id")"
    sleep 0.2
  done
}
ports_free() {  # ports_free PORT...: true when each can be bound on 127.0.0.1
  "$py" - "$@" <<'PY'
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", int(p)))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
PY
}
start_stack() {  # start_stack DIR: ferry up in the background; sets url, token, up_pid
  local dir=$1 port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 40000))
    ports_free "$port" $((port + 1)) $((port + 2)) $((port + 11)) $((port + 12)) && break
  done
  "$ferry" up --dir "$dir" --port "$port" --cli-config '' >"$dir.up.out" 2>&1 &
  up_pid=$!
  for _ in $(seq 600); do
    grep -q '^Ferry is up' "$dir.up.out" 2>/dev/null && break
    kill -0 "$up_pid" 2>/dev/null || { up_pid=; fail "ferry up exited: $(cat "$dir.up.out")"; }
    sleep 0.1
  done
  grep -q '^Ferry is up' "$dir.up.out" || fail "ferry up did not start within 60 s: $(cat "$dir.up.out")"
  mapfile -t up_children < <(ps -o pid= --ppid "$up_pid" | tr -d ' ')
  url=http://127.0.0.1:$port
  token=$(cat "$dir/server/api-token")
}

# ---------------------------------------------------------------------------------------------
# One round: writes $work/roundN.json (the figures of the round).
run_round() {
  local r=$1
  local dir=$work/round$r
  say "failover_bench: round $r of $rounds: a server and two nodes (ferry up)"
  start_stack "$dir"
  local nodes src_api tgt_api
  nodes=$(call GET /nodes)
  src_api=$(json '[n["api_url"] for n in j["items"] if n["name"]=="node-primary"][0]' <<<"$nodes")
  tgt_api=$(json '[n["api_url"] for n in j["items"] if n["name"]=="node-recovery"][0]' <<<"$nodes")

  local disk=$dir/web1-disk0.img
  truncate -s "$disk_bytes" "$disk"
  call POST /policies '{"name": "bench", "rpo_threshold_seconds": 30, "crash_consistent_interval_seconds": 1, "app_consistent_interval_seconds": 0}' >/dev/null
  call POST /machines "{\"name\": \"web1\", \"site\": \"primary\", \"node\": \"node-primary\", \"disks\": [{\"name\": \"disk0\", \"path\": \"$disk\", \"size\": $disk_bytes}]}" >/dev/null
  say "failover_bench: protecting web1 ($disk_gib GiB sparse disk) toward recovery"
  local t job item vol src_uri sync_s
  t=$EPOCHREALTIME
  job=$(call POST /items '{"machine": "web1", "target_site": "recovery", "policy": "bench"}')
  item=$(json 'j["job"]["target"]["id"]' <<<"$job")
  wait_job "$(json 'j["job"]["id"]' <<<"$job")" 1800
  sync_s=$("$py" -c "print($EPOCHREALTIME - $t)")
  [[ $(call GET "/items/$item" | json 'j["state"]') == Protected ]] || fail "$item is not Protected: $(call GET "/items/$item")"
  vol=$(call GET "/items/$item" | json 'j["disks"][0]["volume"]')
  src_uri=$(node "$src_api" GET /v1/status | json "[v for v in j['volumes'] if v['name']=='$vol'][0]['uri']")

  say "failover_bench: writing $journal_mib MiB ($bs random writes) through $src_uri"
  t=$EPOCHREALTIME
  fio --name=fill --thread --ioengine=nbd --uri="$src_uri" --rw=randwrite --bsrange="$bs" --iodepth=16 \
      --size="$disk_bytes" --io_size="$journal_bytes" --buffer_compress_percentage=50 --refill_buffers \
      --randseed="$r" --output-format=json >"$dir.fio.json" 2>"$dir.fio.err" &
  fio_pid=$!
  wait "$fio_pid" || { fio_pid=; fail "fio: $(tail -n 5 "$dir.fio.err")"; }
  fio_pid=
  local write_s last acked catch_s deadline
  write_s=$("$py" -c "print($EPOCHREALTIME - $t)")
  last=$(node "$src_api" GET /v1/status | json "[v for v in j['volumes'] if v['name']=='$vol'][0]['log_last_seq']")
  deadline=$((EPOCHSECONDS + 900))
  while :; do
    acked=$(node "$src_api" GET /v1/status | json "[v for v in j['volumes'] if v['name']=='$vol'][0]['link']['acked_seq']")
    ((acked >= last)) && break
    ((EPOCHSECONDS < deadline)) || fail "the target did not acknowledge seq $last within 900 s (acked $acked)"
    sleep 0.05
  done
  catch_s=$("$py" -c "print($EPOCHREALTIME - $t - $write_s)")
  say "failover_bench: target holds seq $last; failing over"

  # 3 and 4: timed in one Python program (monotonic clock; a new HTTP connection per request).
  "$py" - "$url" "$token" "$item" "$vol" "$tgt_api" "$src_uri" "$poll_ms" "$dir" "$dir.fio.json" \
         "$sync_s" "$write_s" "$catch_s" "$last" "$qemu_limit" >"$work/result$r.json" <<'PY' || fail "the timed part failed"
import datetime, http.client, json, os, random, re, subprocess, sys, time, urllib.parse, urllib.request
import nbd

(url, token, item, vol, tgt_api, src_uri, poll_ms, wdir, fio_json, sync_s, write_s, catch_s,
 last_seq, qemu_limit) = sys.argv[1:]
qemu_limit = int(qemu_limit)
poll = int(poll_ms) / 1000
MiB = 1 << 20
u = urllib.parse.urlsplit(url)


# One connection per request, as curl and the CLI do. On a kept-alive connection every answer
# of the server comes about 40 ms late (measured below): it writes the headers and the body of
# an answer separately without TCP_NODELAY, so Nagle holds the body until the client's delayed
# ACK of the headers.
def api(method, path, body=None, conn=None):
    c = conn or http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.request(method, "/api/v1" + path, body=None if body is None else json.dumps(body).encode(),
              headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    if r.status >= 300:
        sys.exit(f"{method} {path}: HTTP {r.status} {data.decode()}")
    return json.loads(data)


def get_ms(path, keep):  # the median time of 10 GETs, on one kept-alive connection or not
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60) if keep else None
    ts = []
    for _ in range(10):
        t = time.monotonic()
        api("GET", path, conn=c)
        ts.append(time.monotonic() - t)
        time.sleep(0.01)
    return sorted(ts)[len(ts) // 2]


def node(method, path, body=None):
    req = urllib.request.Request(tgt_api + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=60))


def wall(t):  # RFC 3339 with up to 9 fractional digits -> seconds since the epoch
    if t is None:
        return None
    base, _, frac = t.rstrip("Z").partition(".")
    s = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return s.timestamp() + (float("0." + frac) if frac else 0.0)


status = node("GET", "/v1/status")
rep = [x for x in status["replicas"] if x["name"] == vol][0]
before = {"journal_bytes": rep.get("journal_bytes"), "last_seq": rep.get("last_seq"),
          "oldest_point": rep.get("oldest_point"), "markers": rep.get("markers"),
          "records": (rep.get("link") or {}).get("records")}
text = open(fio_json).read()
fio = json.loads(text[text.index("{"):])["jobs"][0]["write"]  # the nbd engine prints a line first

# ---- Ferry: request -> job Succeeded -> URI -> first MiB read (monotonic clock).
w0 = time.time()
t0 = time.monotonic()
job = api("POST", f"/items/{item}/failover", {"point": "latest-processed"})["job"]
t_accepted = time.monotonic()
polls = 0
while True:
    job = api("GET", f"/jobs/{job['id']}")
    polls += 1
    if job["state"] == "Succeeded":
        break
    if job["state"] in ("Failed", "Cancelled", "Suspended"):
        sys.exit(f"the failover job is {job['state']}: {json.dumps(job)}")
    if time.monotonic() - t0 > 600:
        sys.exit(f"the failover job is not done after 600 s: {json.dumps(job)}")
    time.sleep(poll)
t_succeeded = time.monotonic()
it = api("GET", f"/items/{item}")
uri = it["failover"]["uris"][vol]
t_uri = time.monotonic()
h = nbd.NBD()
h.connect_uri(uri)
t_connected = time.monotonic()
first = h.pread(MiB, 0)
t_read = time.monotonic()
ferry_s = t_read - t0

seq = it["failover"]["seqs"][vol]
steps = [{"name": s["name"], "title": s["title"], "state": s["state"], "message": s.get("message", ""),
          "s": (wall(s["ended_at"]) - wall(s["started_at"])) if s.get("started_at") and s.get("ended_at") else None,
          "start": wall(s.get("started_at")) - w0 if s.get("started_at") else None}
         for s in job["steps"] if s.get("phase", "run") == "run"]
jobt = {k: (wall(job.get(k)) - w0 if job.get(k) else None) for k in ("created_at", "started_at", "ended_at")}

get_new_s, get_keep_s = get_ms(f"/jobs/{job['id']}", False), get_ms(f"/jobs/{job['id']}", True)

# ---- The peer: copy the same point (a read-only view of the seq) to a local raw file with
# nbdcopy, then read its first MiB.
view = node("POST", f"/v1/replicas/{vol}/views", {"point": f"seq:{seq}"})
copy = os.path.join(wdir, "peer-nbdcopy.img")
t = time.monotonic()
subprocess.run(["nbdcopy", view["uri"], copy], check=True)
with open(copy, "rb") as f:
    peer_first = f.read(MiB)
peer_s = time.monotonic() - t
t = time.monotonic()
fd = os.open(copy, os.O_RDONLY)
os.fsync(fd)
os.close(fd)
peer_fsync_s = time.monotonic() - t
peer_alloc = os.stat(copy).st_blocks * 512
# qemu-img convert of the same view, stopped after qemu_limit seconds (see the header).
qcopy = os.path.join(wdir, "peer-qemu-img.img")
qemu_view_s, qemu_view_pct = None, None
if qemu_limit > 0:
    t = time.monotonic()
    p = subprocess.Popen(["qemu-img", "convert", "-p", "-f", "raw", "-O", "raw", view["uri"], qcopy],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=qemu_limit)
        if p.returncode != 0:
            sys.exit(f"qemu-img convert of the view: {out.decode()}")
        qemu_view_s = time.monotonic() - t
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    pct = re.findall(rb"\(([0-9.]+)/100%\)", out)
    qemu_view_pct = float(pct[-1]) if pct else 0.0
    if os.path.exists(qcopy):
        os.unlink(qcopy)
# qemu-img convert of nbdcopy's plain copy to another file: the copy tool without Ferry's NBD
# server in the way.
qcopy2 = os.path.join(wdir, "peer-qemu-img-file.img")
t = time.monotonic()
subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", copy, qcopy2], check=True)
qemu_file_s = time.monotonic() - t

# ---- Data check (not timed): the recovered disk, the source and the copies agree.
size = h.get_size()
src = nbd.NBD()
src.connect_uri(src_uri)
rng = random.Random(1)
offsets = [0] + [rng.randrange(size // MiB) * MiB for _ in range(64)]
bad = []
with open(copy, "rb") as f1, open(qcopy2, "rb") as f2:
    for off in offsets:
        got = first if off == 0 else h.pread(MiB, off)
        f1.seek(off)
        f2.seek(off)
        if not (got == src.pread(MiB, off) == f1.read(MiB) == f2.read(MiB)):
            bad.append(off)
if peer_first != first:
    bad.append("first MiB of the nbdcopy copy")
h.shutdown()
src.shutdown()
# One block-status request over the first 2 GiB of the view (the most libnbd sends is 4 GiB;
# qemu probably asks for less than 2 GiB at once), with NBD_CMD_FLAG_REQ_ONE as qemu sends
# it, and without: about what each of qemu-img's requests costs the server.
bs_len = min(size, (1 << 31) - 4096)
b = nbd.NBD()
b.add_meta_context("base:allocation")
b.connect_uri(view["uri"])
extents = []
def on_extents(meta, off, entries, err):
    extents.append(len(entries) // 2)
    return 0
t = time.monotonic()
b.block_status(bs_len, 0, on_extents, nbd.CMD_FLAG_REQ_ONE)
bs_one_s = time.monotonic() - t
t = time.monotonic()
b.block_status(bs_len, 0, on_extents)
bs_all_s = time.monotonic() - t
bs_extents = extents[-1]
b.shutdown()
os.unlink(copy)
os.unlink(qcopy2)

print(json.dumps({
    "ferry_s": ferry_s, "accepted_s": t_accepted - t0, "succeeded_s": t_succeeded - t0,
    "uri_s": t_uri - t_succeeded, "connect_s": t_connected - t_uri, "read_s": t_read - t_connected,
    "polls": polls, "get_new_s": get_new_s, "get_keep_s": get_keep_s, "job": job["id"], "job_times": jobt, "steps": steps, "uri": uri, "seq": seq,
    "point_time": it["failover"].get("point_time"),
    "peer_s": peer_s, "peer_fsync_s": peer_fsync_s, "peer_alloc": peer_alloc,
    "qemu_view_s": qemu_view_s, "qemu_view_pct": qemu_view_pct, "qemu_limit": qemu_limit, "qemu_file_s": qemu_file_s,
    "view_uri": view["uri"], "bs_one_s": bs_one_s, "bs_all_s": bs_all_s, "bs_extents": bs_extents, "bs_len": bs_len, "check_offsets": len(offsets), "check_bad": [str(b) for b in bad],
    "journal": before, "last_seq": int(last_seq), "sync_s": float(sync_s), "write_s": float(write_s),
    "catch_s": float(catch_s), "fio_bytes": fio["io_bytes"], "fio_bw": fio["bw_bytes"],
    "fio_ios": fio["total_ios"]}))
PY
  stop_stack
  [[ -n $keep ]] || rm -rf "$dir"
  "$py" - "$work/result$r.json" <<'PY' >&2
import json, sys
j = json.load(open(sys.argv[1]))
q = ("skipped" if j["qemu_limit"] == 0 else f"{j['qemu_view_s']:.3f} s" if j["qemu_view_s"] is not None
     else f"stopped after {j['qemu_limit']} s at {j['qemu_view_pct']}%")
print(f"failover_bench: Ferry {j['ferry_s']:.3f} s, nbdcopy {j['peer_s']:.3f} s, qemu-img convert of the view {q}")
PY
}

for r in $(seq "$rounds"); do run_round "$r"; done

# ---------------------------------------------------------------------------------------------
echo "Ferry failover vs a copy-based recovery — $(date -u +%Y-%m-%dT%H:%M:%SZ), $("$ferry" version 2>/dev/null | head -1) (binary of $binary_time), $(nproc) CPUs (load $load_start at the start, $(cut -d' ' -f1 /proc/loadavg) at the end), $rounds round(s) (median), $((EPOCHSECONDS - started))s"
"$py" - "$markdown" "$disk_gib" "$journal_mib" "$bs" "$poll_ms" "$work"/result*.json <<'PY'
import json, statistics, sys
markdown, disk_gib, journal_mib, bs, poll_ms = sys.argv[1:6]
R = [json.load(open(p)) for p in sys.argv[6:]]
med = lambda xs: statistics.median(xs)
MiB = 1 << 20
rows = []
def row(*c): rows.append([str(x) for x in c])
def s(x): return f"{x:.3f} s"
def ms(x): return f"{x * 1000:.0f} ms" if x >= 0.1 else f"{x * 1000:.1f} ms"
all_ = lambda k: " / ".join(f"{r[k]:.3f}" for r in R)
f, p = med([r["ferry_s"] for r in R]), med([r["peer_s"] for r in R])
qf = med([r["qemu_file_s"] for r in R])
qv = [r["qemu_view_s"] for r in R]
j0 = R[len(R) // 2]["journal"]
jour = f"{disk_gib} GiB disk, {(j0['journal_bytes'] or 0) / MiB:.0f} MiB of journal"
print(f"setup (round 1): {jour}; {R[0]['fio_bytes'] / MiB:.0f} MiB written by fio in {R[0]['fio_ios']} writes of {bs} "
      f"({R[0]['fio_bw'] / MiB:.0f} MiB/s); protect {R[0]['sync_s']:.1f} s, fio {R[0]['write_s']:.1f} s, "
      f"target caught up {R[0]['catch_s']:.1f} s after fio; job polled every {poll_ms} ms")
if len(R) > 1:
    print(f"rounds (s): ferry {all_('ferry_s')}; nbdcopy {all_('peer_s')}")
row(f"failover to latest-processed ({jour}): request -> recovered disk serving reads",
    s(f), f"{s(p)} (nbdcopy of the point to a file)", f"{p / f:.1f}", "<= 2 s", "PASS" if f <= 2 else "FAIL")
if R[0]["qemu_limit"] > 0:
    if all(x is not None for x in qv):
        q = med(qv)
        row("... same point copied by qemu-img convert (peer, info)", "-", s(q), f"{q / f:.1f}", "-", "info")
    else:
        pct = ", ".join(f"{r['qemu_view_pct']:.1f}%" for r in R)
        row("... same point copied by qemu-img convert (peer, info)", "-",
            f"> {R[0]['qemu_limit']} s (stopped at {pct} done)", f"> {R[0]['qemu_limit'] / f:.0f}", "-", "info")
row(f"... one block-status request on the view, first {R[0]['bs_len'] / MiB:.0f} MiB: with REQ_ONE / without",
    f"{ms(med([r['bs_one_s'] for r in R]))} / {ms(med([r['bs_all_s'] for r in R]))} "
    f"({med([r['bs_extents'] for r in R]):.0f} extents)", "-", "-", "-", "info")
row("... qemu-img convert of nbdcopy's plain copy to another file (info)", "-", s(qf), f"{qf / f:.1f}", "-", "info")
row("... nbdcopy's copy: space used / fsync after it", "-",
    f"{med([r['peer_alloc'] for r in R]) / MiB:.0f} MiB / {s(med([r['peer_fsync_s'] for r in R]))}", "-", "-", "info")
row("... POST answered (202, job created)", ms(med([r["accepted_s"] for r in R])), "-", "-", "-", "info")
jt = lambda k: [r["job_times"][k] for r in R if r["job_times"][k] is not None]
row("... job created_at / started_at / ended_at (server clock), from the request",
    f"{ms(med(jt('created_at')))} / {ms(med(jt('started_at')))} / {ms(med(jt('ended_at')))}", "-", "-", "-", "info")
names = [x["name"] for x in R[0]["steps"]]
def by_round(xs):  # "median (round 1 / round 2 / ...)" in ms
    return ms(med(xs)) + (" (" + " / ".join(f"{x * 1000:.1f}" for x in xs) + ")" if len(xs) > 1 else "")
for nm in names:
    d = [x["s"] for r in R for x in r["steps"] if x["name"] == nm and x["s"] is not None]
    msg = [x["message"] for x in R[0]["steps"] if x["name"] == nm][0]
    msg = (msg[:70] + "...") if len(msg) > 73 else msg
    row(f"... step {nm}" + (f" ({msg})" if msg else ""), by_round(d) if d else "-", "-", "-", "-", "info")
row("... between the steps (the engine's own persistence)",
    by_round([(r["job_times"]["ended_at"] - r["job_times"]["started_at"]) - sum(x["s"] or 0 for x in r["steps"])
              for r in R if r["job_times"]["ended_at"] is not None]), "-", "-", "-", "info")
row("... job Succeeded seen by the poll, from the request",
    by_round([r["succeeded_s"] for r in R]) + f"; {med([r['polls'] for r in R]):.0f} polls", "-", "-", "-", "info")
row("... GET item for the URI / NBD connect / read of the first MiB",
    f"{ms(med([r['uri_s'] for r in R]))} / {ms(med([r['connect_s'] for r in R]))} / {ms(med([r['read_s'] for r in R]))}",
    "-", "-", "-", "info")
row("... one GET /jobs/ID: new connection (as timed here) / kept-alive connection",
    f"{ms(med([r['get_new_s'] for r in R]))} / {ms(med([r['get_keep_s'] for r in R]))}", "-", "-", "-", "info")
row("... target journal before the failover: bytes / records / seqs",
    f"{(j0['journal_bytes'] or 0) / MiB:.0f} MiB / {j0['records']} / {j0['oldest_point']}..{j0['last_seq']}",
    "-", "-", "-", "info")
bad = [b for r in R for b in r["check_bad"]]
row("... data check: first MiB + 64 random MiB, recovered = source = the copies",
    "ok" if not bad else f"DIFFERS at {', '.join(bad[:5])}", "-", "-", "-", "PASS" if not bad else "FAIL")
head = ["metric", "ferry", "peer", "ratio (peer/ferry)", "target", "result"]
if markdown:
    print("| " + " | ".join(head) + " |"); print("|" + "---|" * len(head))
    for r in rows: print("| " + " | ".join(r) + " |")
else:
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows: print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
PY
