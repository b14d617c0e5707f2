#!/usr/bin/env bash
# A real Linux guest (QEMU; TCG without KVM) on a disk that `ferry replica serve --overlay`
# serves over NBD, and then on a source disk served through the write splitter
# (`ferry capture serve`), whose recovery point taken afterwards must hold its writes. The guest writes numbered records, each durable before the next (see
# tests/guest/init); the overlay must hold them across server restarts, read back both by
# the guest and on the host (nbdcopy), and after a power cut in the middle of the writes it
# must hold an unbroken prefix at least as long as the guest saw acknowledged.
# Usage: guest_boot_test.sh FERRY_BINARY. The guest is built once into FERRY_GUEST_DIR
# (default: guest/ beside the binary) and reused while its inputs stay the same.
set -euo pipefail
ferry=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
for tool in qemu-system-x86_64 nbdcopy cpio python3 timeout; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (run tools/install-deps)" >&2; exit 1; }
done
began=$EPOCHSECONDS
work=$(mktemp -d /tmp/ferry-guest.XXXXXX)  # short: Unix socket paths are limited to 107 bytes
server=
cleanup() {
  if [[ -n $server ]]; then kill -KILL "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

guest=${FERRY_GUEST_DIR:-$(dirname "$ferry")/guest}
"$here/guest/build-guest.sh" "$guest"

# serve: `ferry replica serve` of overlay vm on $work/sock, until stop.
serve() {
  rm -f "$work/sock"
  "$ferry" replica serve "$work/r" --overlay vm --listen "unix://$work/sock" >"$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    grep -q '^other points' "$work/serve.log" && return
    kill -0 "$server" 2>/dev/null || fail "server exited: $(cat "$work/serve.log")"
    sleep 0.1
  done
  fail "server did not start: $(cat "$work/serve.log")"
}
# stop: SIGTERM (the server flushes the overlay), then a clean exit within 10 s.
stop() {
  kill -TERM "$server"
  for _ in $(seq 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$server" 2>/dev/null && fail "server ignored SIGTERM"
  wait "$server" || fail "server exited with status $?: $(cat "$work/serve.log")"
  server=
  grep -q '^stopped: ' "$work/serve.log" || fail "server did not report its stop: $(cat "$work/serve.log")"
}
disk="nbd+unix:///?socket=$work/sock"
boot_times=()
# boot NAME ARGS...: runs the guest (run-guest.sh ARGS) with its console in $work/NAME.log.
boot() {
  local name=$1; shift
  "$here/guest/run-guest.sh" --guest "$guest" --disk "$disk" --log "$work/$name.log" --timeout 120 "$@" \
    | tee "$work/$name.run" || fail "guest $name (console above)"
  boot_times+=("$name $(sed -n 's/^run-guest: booted in \([0-9.]*\) s.*/\1/p' "$work/$name.run")s")
}
console_fail() {  # console_fail NAME WHY
  echo "---- guest console ($1)" >&2; cat "$work/$1.log" >&2; echo "----" >&2
  fail "$2"
}
# wrote_lines NAME FIRST: the guest acknowledged FIRST, FIRST+1, ... in order; prints the
# count. A last line cut short by a power cut is no acknowledgement.
wrote_lines() {
  local log=$work/$1.log
  { if [[ -n $(tail -c1 "$log") ]]; then sed '$d' "$log"; else cat "$log"; fi; } | grep -a '^wrote ' |
    awk -v first="$2" '$2 != first + NR - 1 { bad = 1; exit } END { if (bad) exit 1; print NR }' ||
    console_fail "$1" "guest $1 acknowledged records out of order"
}
# host_records MIN [MAX]: copies the served disk to the host and checks it (check_records).
host_records() {
  rm -f "$work/disk.img"
  timeout 60 nbdcopy "$disk" "$work/disk.img" || fail "nbdcopy of the served overlay failed"
  check_records "$work/disk.img" "$@"
}
# check_records IMAGE MIN [MAX]: the records must be an unbroken prefix 0..N-1 (each block
# "FERRYREC i\n" and zeros) with MIN <= N <= MAX; prints N.
check_records() {
  python3 - "$@" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
lo = int(sys.argv[2]); hi = int(sys.argv[3]) if len(sys.argv) > 3 else 1 << 62
bs = 4096
assert len(data) == 64 << 20, f"served disk is {len(data)} bytes, expected 64 MiB"
def record(i):
    want = b"FERRYREC %d\n" % i
    return want + bytes(bs - len(want))
n = 0
while data[n * bs:(n + 1) * bs] == record(n):
    n += 1
later = data.find(b"FERRYREC", n * bs)
if later >= 0:
    sys.exit(f"records 0..{n - 1} then block {n} is no record, but block {later // bs} holds one")
if not lo <= n <= hi:
    sys.exit(f"{n} records on the host, expected {lo}..{hi if hi < 1 << 62 else 'more'}")
print(n)
PY
}

"$ferry" replica create "$work/r" --size 64M >/dev/null

# 1. The guest writes records 0..49; SIGTERM must flush them into the overlay.
serve
boot writer ferry.mode=writer ferry.count=50
acked=$(wrote_lines writer 0)
((acked == 50)) || console_fail writer "guest acknowledged $acked records, expected 50"
stop

# 2. A new server: the guest and the host both read exactly records 0..49.
serve
boot reader ferry.mode=reader
grep -qx 'records 50 contiguous' "$work/reader.log" || console_fail reader "guest did not find 50 records"
grep -qx 'verify ok' "$work/reader.log" || console_fail reader "guest verify failed"
n=$(host_records 50 50) || fail "host check after the restart"

# 3. A power cut: the guest goes on from record 50 and is killed once record 59 is
#    acknowledged, and the server is killed with it (SIGKILL: no flush at exit). Every
#    acknowledged record was flushed (fsync, so an NBD FLUSH) before the guest printed it,
#    so it must be in the overlay, as an unbroken prefix.
boot cut --kill-when '^wrote 59$' ferry.mode=writer ferry.start=50 ferry.count=5000
acked=$(wrote_lines cut 50)
((acked >= 10)) || console_fail cut "guest acknowledged $acked records before the cut, expected 10 or more"
{ kill -KILL "$server" && wait "$server"; } 2>/dev/null || true  # no "Killed" notice
server=
serve
n=$(host_records $((50 + acked))) || fail "host check after the power cut ($acked acknowledged)"
stop

# 4. The guest at the source site: its disk served through the write splitter, which captures
#    every write into the pending log before answering. A marker taken afterwards is a
#    recovery point that holds every record the guest wrote, and equals the disk.
truncate -s 64M "$work/src.img"
rm -f "$work/sock"
"$ferry" capture serve "$work/src.img" --log "$work/plog" --listen "unix://$work/sock" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q '^serving ' "$work/serve.log" && break; sleep 0.1; done
grep -q '^serving ' "$work/serve.log" || fail "splitter did not start: $(cat "$work/serve.log")"
boot source ferry.mode=writer ferry.count=30
acked=$(wrote_lines source 0)
((acked == 30)) || console_fail source "guest acknowledged $acked records through the splitter, expected 30"
stop
"$ferry" replica marker "$work/plog" --kind app-consistent --label after-guest >/dev/null
"$ferry" replica export "$work/plog" --point latest-app-consistent --output "$work/point.img" >/dev/null
check_records "$work/point.img" 30 30 >/dev/null || fail "the recovery point after the guest's writes lacks them"
cmp "$work/point.img" "$work/src.img" || fail "the recovery point differs from the source disk"

echo "guest boot times (QEMU start to /init): ${boot_times[*]}"
echo "guest boot: all checks passed ($n records after the power cut; $((EPOCHSECONDS - began)) s)"
