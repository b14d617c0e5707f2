#!/usr/bin/env bash
# The splitter serving a block device, as it serves a machine's real disk: a loop device over
# a file stands in for it. `ferry capture serve /dev/loopN` sizes a new pending log from the
# device; nbdcopy and qemu-io write, zero (with and without NO_HOLE), discard and FUA-write
# through it. Afterwards the device holds exactly what the same operations make of a plain
# image, and so does the pending log (verified, exported, and served as a view).
# Needs root to attach a loop device; without one it exits 77 (a skip for ctest), saying why.
# Usage: blockdev_splitter.sh FERRY_BINARY
set -euo pipefail
ferry=$(realpath "$1")
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
for tool in losetup nbdcopy nbdinfo qemu-io qemu-img timeout cmp; do
  command -v "$tool" >/dev/null || fail "$tool is missing (run tools/install-deps)"
done
[[ $(id -u) == 0 ]] || skip "attaching a loop device needs root"
work=$(mktemp -d /tmp/ferry-blk.XXXXXX)  # short: Unix socket paths are limited to 107 bytes
dev= server=
cleanup() {
  if [[ -n $server ]]; then kill -KILL "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  if [[ -n $dev ]]; then losetup -d "$dev" || echo "could not detach $dev" >&2; fi
  rm -rf "$work"
}
trap cleanup EXIT
t() { timeout 60 "$@"; }  # every client call

# serve NAME CMD...: starts `ferry CMD` listening on $work/NAME.sock; waits until it serves.
serve() {
  local name=$1; shift
  "$ferry" "$@" --listen "unix://$work/$name.sock" >"$work/$name.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    grep -q '^serving ' "$work/$name.log" && { uri="nbd+unix:///?socket=$work/$name.sock"; return; }
    kill -0 "$server" 2>/dev/null || { server=; fail "$name exited: $(cat "$work/$name.log")"; }
    sleep 0.1
  done
  fail "$name did not start: $(cat "$work/$name.log")"
}
stop() {
  kill -TERM "$server"
  wait "$server" || fail "server exited with status $?: $(cat "$work"/*.log)"
  server=
}

# A 32 MiB device whose old content is not zero, so every zeroing shows.
size=$((32 << 20))
head -c "$size" /dev/zero | tr '\0' '\132' >"$work/backing"
dev=$(losetup -f --show "$work/backing" 2>"$work/losetup.err") || {
  dev=
  skip "cannot attach a loop device: $(cat "$work/losetup.err")"
}
[[ -b $dev ]] || { dev=; fail "losetup gave '$dev', not a block device"; }

serve split capture serve "$dev" --log "$work/plog"
grep -q "^serving disk $dev (32.0 MiB" "$work/split.log" || fail "the device was not sized: $(cat "$work/split.log")"
t nbdinfo --json "$uri" | python3 -c '
import json, sys; e = json.load(sys.stdin)["exports"][0]
assert e["export-size"] == 32 << 20 and not e["is_read_only"] and e["can_zero"] and e["can_trim"] and e["can_fua"], e'

# The whole device from an image with zero runs (nbdcopy zeroes those), then writes of
# every kind. The same qemu-io commands applied to a plain copy of the image make the
# expected content.
head -c "$size" /dev/urandom >"$work/img"
dd if=/dev/zero of="$work/img" bs=1M seek=3 count=2 conv=notrunc status=none
t nbdcopy --flush "$work/img" "$uri"
ops=(-c 'write -P 0x11 0 1M' -c 'write -P 0x22 100 3000' -c 'write -f -P 0x33 5M 64k'
     -c 'write -z 8M 1M' -c 'write -z -u 10M 1M' -c "write -z $(((12 << 20) + 512)) 3000"
     -c 'discard 16M 2M' -c 'write -z -f 20M 64k' -c 'flush')
t qemu-io -f raw "${ops[@]}" "$uri" >"$work/qw.txt" || fail "qemu-io writes: $(cat "$work/qw.txt")"
cp "$work/img" "$work/expect"
t qemu-io -f raw "${ops[@]}" "$work/expect" >/dev/null
t qemu-io -r -f raw -c 'read -P 0 8M 1M' -c 'read -P 0 10M 1M' -c 'read -P 0 16M 2M' "$uri" >"$work/qr.txt" \
  || fail "zeroed ranges: $(cat "$work/qr.txt")"
grep -q 'Pattern verification failed' "$work/qr.txt" && fail "zeroed ranges: $(cat "$work/qr.txt")"
t nbdcopy "$uri" - | cmp - "$work/expect" || fail "the export reads back other than the expected image"
stop
grep -q '^stopped: pending log holds seq ' "$work/split.log" || fail "the splitter did not report its stop"

# The device itself, through the kernel, and the backing file under it.
cmp "$dev" "$work/expect" || fail "the device differs from the expected image"
cmp "$work/backing" "$work/expect" || fail "the loop device's backing file differs from the expected image"

# The pending log: sound, for a volume of the device's size, and holding the same disk.
"$ferry" replica verify "$work/plog" >"$work/verify.txt" 2>&1 || fail "verify: $(cat "$work/verify.txt")"
"$ferry" replica inspect "$work/plog" --output json >"$work/inspect.json"
python3 - "$work/inspect.json" "$size" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["size"] == int(sys.argv[2]), f"the log's volume is not the device's size: {j}"
assert j["records"] > 0 and j["problems"] == [], j
PY
"$ferry" replica export "$work/plog" --point latest --output "$work/latest.img" >/dev/null
cmp "$work/latest.img" "$work/expect" || fail "the pending log's latest point differs from the device"
serve view replica serve "$work/plog" --point latest
t qemu-img compare -f raw -F raw "$uri" "$dev" >/dev/null || fail "a view of the pending log differs from the device"
stop

# A restart on the same device and log: the splitter opens it again (sizes agree) and the
# disk is unchanged.
serve split2 capture serve "$dev" --log "$work/plog"
t nbdcopy "$uri" - | cmp - "$work/expect" || fail "the device changed across a restart"
stop
echo "block device splitter: all checks passed"
