#!/usr/bin/env bash
# The splitter with real clients: fio verifies writes through it and reads them back through
# a view of its pending log; qemu-io zeroes with and without NO_HOLE; then kill -9 in the
# middle of a write run: every write the client saw answered must be in the pending log
# afterwards. The client is libnbd (Debian's python3-libnbd), with
# up to 32 writes in flight; it records each write's completion, and kills the server itself
# once 1500 writes were answered, with more still in flight.
# Usage: capture_crash.sh FERRY_BINARY
set -euo pipefail
ferry=$(realpath "$1")
py=/usr/bin/python3  # Debian's, which has the nbd module
"$py" -c 'import nbd' 2>/dev/null || { echo "FAIL: python3-libnbd is missing (run tools/install-deps)" >&2; exit 1; }
work=$(mktemp -d /tmp/ferry-crash.XXXXXX)
server=
cleanup() {
  if [[ -n $server ]]; then kill -KILL "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. fio writes through the splitter and verifies; then fio reads the same pattern back
#    through a view of the pending log (a recovery point): the log holds what the disk holds.
truncate -s 64M "$work/fio.img"
"$ferry" capture serve "$work/fio.img" --log "$work/fiolog" --listen "unix://$work/fio.sock" >"$work/fio-serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q '^serving ' "$work/fio-serve.log" && break; sleep 0.1; done
fio_job=(--name=split --ioengine=nbd --rw=randwrite --bs=4k --iodepth=32 --size=16m
         --verify=crc32c --randseed=11 --verify_state_save=0 --directory="$work")
timeout 120 fio "${fio_job[@]}" --uri="nbd+unix:///?socket=$work/fio.sock" >"$work/fio1.log" 2>&1 ||
  fail "fio write+verify through the splitter: $(cat "$work/fio1.log")"
kill -TERM "$server"; wait "$server" || fail "splitter exited badly: $(cat "$work/fio-serve.log")"
"$ferry" replica serve "$work/fiolog" --listen "unix://$work/view.sock" >"$work/view.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q '^serving ' "$work/view.log" && break; sleep 0.1; done
timeout 120 fio "${fio_job[@]}" --verify_only --uri="nbd+unix:///?socket=$work/view.sock" >"$work/fio2.log" 2>&1 ||
  fail "fio verify through a view of the pending log: $(cat "$work/fio2.log")"
kill -TERM "$server"; wait "$server" || true
server=
echo "fio: writes verified through the splitter and again through a view of its pending log"

# Zeroes through the splitter: qemu-io's `write -z` asks for NBD_CMD_FLAG_NO_HOLE and the
# disk's blocks stay allocated; `write -z -u` (may unmap) leaves holes. Both read as zeros,
# on the disk and in the pending log.
truncate -s 16M "$work/z.img"
"$ferry" capture serve "$work/z.img" --log "$work/zlog" --listen "unix://$work/z.sock" >"$work/z-serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q '^serving ' "$work/z-serve.log" && break; sleep 0.1; done
zuri="nbd+unix:///?socket=$work/z.sock"
allocated() { sync "$work/z.img"; stat -c %b "$work/z.img"; }  # 512-byte units
timeout 60 qemu-io -f raw -c 'write -P 0x44 0 4M' -c flush "$zuri" >/dev/null || fail "qemu-io write"
written=$(allocated)
timeout 60 qemu-io -f raw -c 'write -z 0 2M' -c flush "$zuri" >/dev/null || fail "qemu-io write -z"
kept=$(allocated)
((kept >= written)) || fail "zeroes with NO_HOLE freed the disk's blocks ($written -> $kept sectors)"
timeout 60 qemu-io -f raw -c 'write -z -u 2M 2M' -c flush "$zuri" >/dev/null || fail "qemu-io write -z -u"
punched=$(allocated)
((punched <= kept - 4096)) || fail "zeroes without NO_HOLE left the disk's blocks allocated ($kept -> $punched sectors)"
timeout 60 qemu-io -r -f raw -c 'read -P 0 0 4M' "$zuri" | grep -q 'read 4194304/4194304' || fail "zeroed range"
kill -TERM "$server"; wait "$server" || fail "splitter exited badly: $(cat "$work/z-serve.log")"
server=
cmp -n 4M "$work/z.img" /dev/zero || fail "the disk does not read as zeros"
"$ferry" replica export "$work/zlog" --point latest --output "$work/z-point.img" >/dev/null
cmp "$work/z-point.img" "$work/z.img" || fail "the pending log differs from the disk after the zeroes"
echo "zeroes: NO_HOLE kept the disk's blocks, may-unmap punched them, both read as zeros"

# 2. kill -9 in the middle of a write run.
truncate -s 64M "$work/disk.img"
"$ferry" capture serve "$work/disk.img" --log "$work/plog" --listen "unix://$work/sock" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q '^serving ' "$work/serve.log" && break; sleep 0.1; done
grep -q '^serving ' "$work/serve.log" || fail "splitter did not start: $(cat "$work/serve.log")"

timeout 120 "$py" - "$work/sock" "$server" "$work/acked" <<'PY'
import os, signal, sys, nbd
sock, pid, acked_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
h = nbd.NBD()
h.connect_unix(sock)
bs, blocks = 4096, (64 << 20) // 4096
def block(i):
    head = b"ACKED %d\n" % i
    return head + bytes([i % 251]) * (bs - len(head))
acked, issued, killed = [], 0, False
def done(i):
    def cb(err):
        if err.value == 0:
            acked.append(i)
        return 1
    return cb
try:
    while issued < blocks:
        while h.aio_in_flight() < 32 and issued < blocks:
            h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(block(issued))), issued * bs,
                         completion=done(issued))
            issued += 1
        h.poll(-1)
        if not killed and len(acked) >= 1500:
            os.kill(pid, signal.SIGKILL)
            killed = True
except nbd.Error:
    pass  # the server is gone
if not killed:
    sys.exit("the run ended before the kill")
with open(acked_path, "w") as f:
    f.write("\n".join(map(str, sorted(acked))))
print(f"{len(acked)} writes answered, {issued} issued, server killed with {issued - len(acked)} unanswered")
PY
{ wait "$server"; } 2>/dev/null || true  # no "Killed" notice
server=

# The pending log, read as a recovery point, holds every answered write.
"$ferry" replica export "$work/plog" --point latest --output "$work/point.img" >/dev/null
"$py" - "$work/point.img" "$work/acked" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
acked = [int(x) for x in open(sys.argv[2]).read().split()]
bs = 4096
missing = []
for i in acked:
    head = b"ACKED %d\n" % i
    if data[i * bs:(i + 1) * bs] != head + bytes([i % 251]) * (bs - len(head)):
        missing.append(i)
if missing:
    sys.exit(f"{len(missing)} answered writes are not in the pending log, e.g. {missing[:5]}")
print(f"all {len(acked)} answered writes are in the pending log")
PY
echo "capture crash: all checks passed"
