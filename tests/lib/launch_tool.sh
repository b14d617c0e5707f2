# Shared by the tests that drive a launcher through the test driver launch_tool
# (tests/launch_qemu_test.sh, tests/launch_bridge_test.sh). Source it with tool (the driver),
# here (tests/), work and m (the machine's directory) set. fail_logs: more files fail shows.
fail_logs=()
fail() {
  echo "FAIL: $*" >&2
  if [[ -f $m/console.log ]]; then echo "---- console (last 30 lines)" >&2; tail -30 "$m/console.log" >&2; fi
  if [[ -s $m/qemu.log ]]; then echo "---- qemu.log" >&2; cat "$m/qemu.log" >&2; fi
  local f
  for f in "${fail_logs[@]}"; do
    if [[ -s $f ]]; then echo "---- ${f##*/} (last 10 lines)" >&2; tail -10 "$f" >&2; fi
  done
  exit 1
}
# load JSON: sets J_KEY=VALUE for each field of launch_tool's answer (booleans: true/false).
load() {
  eval "$(python3 -c '
import json, shlex, sys
for k, v in json.loads(sys.argv[1]).items():
    print("J_%s=%s" % (k, shlex.quote(str(v).lower() if isinstance(v, bool) else str(v))))' "$1")"
}
now_ms() { echo $(( ${EPOCHREALTIME/[.,]/} / 1000 )); }
qemu_pids() { pgrep -f -- "-pidfile $m/qemu.pid" || true; }
guest=${FERRY_GUEST_DIR:-$(dirname "$tool")/guest}
# serve_disk IMAGE: qemu-nbd serves IMAGE on $work/nbd.sock (its pid in $work/nbd.pid).
serve_disk() {
  qemu-nbd --persistent --fork --pid-file "$work/nbd.pid" -k "$work/nbd.sock" -f raw "$1"
  for _ in $(seq 50); do [[ -S $work/nbd.sock ]] && return 0; sleep 0.1; done
  fail "qemu-nbd did not start"
}
