#!/usr/bin/env bash
# Real NBD clients against `ferry replica serve`: libnbd's nbdinfo and nbdcopy, qemu-img,
# qemu-io and fio's nbd engine, over Unix sockets and TCP. Recovery points are served
# read-only (chosen by export name, or with --point as the default export) and must read back
# exactly what was written at each point; an overlay takes
# aligned, unaligned, zero and discard writes, from several connections at once, keeps them
# across a server restart, and leaves the replica itself untouched.
# Usage: nbd_clients.sh FERRY_BINARY. Every client call has a timeout: a hang fails the test.
set -euo pipefail
ferry=$(realpath "$1")
for tool in nbdinfo nbdcopy qemu-img qemu-io fio python3 timeout; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (run tools/install-deps)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/ferry-nbd.XXXXXX)  # short: Unix socket paths are limited to 107 bytes
declare -A pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"  # whatever a client leaves behind goes away with the rest
fail() { echo "FAIL: $*" >&2; exit 1; }
t() { timeout 60 "$@"; }  # every client call

# serve NAME ARGS...: starts `ferry replica serve ARGS` (one Unix and one TCP --listen) and
# waits until it listens on both; sets unix_uri and tcp_uri (export "") from what it prints.
serve() {
  local name=$1; shift
  "$ferry" replica serve "$@" >"$work/$name.log" 2>&1 &
  pids[$name]=$!
  unix_uri= tcp_uri=
  for _ in $(seq 100); do
    unix_uri=$(grep -o 'nbd+unix:///?socket=[^ ]*' "$work/$name.log" | head -1) || true
    tcp_uri=$(grep -o 'nbd://[0-9.]*:[0-9]*/' "$work/$name.log" | head -1) || true
    [[ -n $unix_uri && -n $tcp_uri ]] && return
    kill -0 "${pids[$name]}" 2>/dev/null || fail "server $name exited: $(cat "$work/$name.log")"
    sleep 0.1
  done
  fail "server $name did not print where it listens: $(cat "$work/$name.log")"
}
# stop NAME: SIGTERM, then the server must exit cleanly within 10 s.
stop() {
  local name=$1 pid=${pids[$1]}
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && fail "server $name ignored SIGTERM"
  wait "$pid" || fail "server $name exited with status $?: $(cat "$work/$name.log")"
  unset "pids[$name]"
  grep -q '^stopped: ' "$work/$name.log" || fail "server $name did not report its stop"
}
# at URI EXPORT: the URI of another export on the same server.
at() { local uri=$1 name=$2; if [[ $uri == nbd+unix:* ]]; then echo "nbd+unix:///$name?${uri#*\?}"; else echo "$uri$name"; fi; }
expect_error() {  # expect_error PATTERN CMD...: CMD fails and says PATTERN
  local pattern=$1; shift
  if out=$("$@" 2>&1); then fail "succeeded: $*"; fi
  grep -q -- "$pattern" <<<"$out" || fail "error for '$*' lacks '$pattern': $out"
}
fill() { head -c "$2" /dev/zero | tr '\0' "\\$(printf '%03o' "$1")"; }  # fill BYTE COUNT

# ---------------------------------------------------------------- a replica with history
size=$((16 << 20))
r=$work/r
"$ferry" replica create "$r" --size 16M >/dev/null
fill 0xa1 65536 >"$work/a"
head -c 8192 /dev/urandom >"$work/b"
head -c 8192 /dev/zero >"$work/z"
fill 0xc3 4096 >"$work/c"
"$ferry" replica write "$r" --offset 0 --file "$work/a" >/dev/null                    # seq 1
"$ferry" replica marker "$r" --kind app-consistent --label before >/dev/null          # seq 2
sleep 0.05  # the next record is visibly later than the marker (for the time point below)
"$ferry" replica write "$r" --offset $((1 << 20)) --file "$work/b" >/dev/null         # seq 3
"$ferry" replica write "$r" --offset 16384 --file "$work/z" >/dev/null                # seq 4: zeroes
"$ferry" replica write "$r" --offset $((8 << 20)) --file "$work/c" >/dev/null         # seq 5
"$ferry" replica marker "$r" --kind crash >/dev/null                                  # seq 6
# The time of marker 2 as listed (times are printed to the nanosecond, so it names seq 2).
t2=$("$ferry" replica points "$r" --output json | python3 -c '
import json, sys
print([x for x in json.load(sys.stdin)["points"] if x["seq"] == 2][0]["time"])')

truncate -s "$size" "$work/expect2"
dd if="$work/a" of="$work/expect2" conv=notrunc status=none
cp "$work/expect2" "$work/expect4"
dd if="$work/b" of="$work/expect4" bs=1M seek=1 conv=notrunc status=none
dd if="$work/z" of="$work/expect4" bs=16384 seek=1 conv=notrunc status=none
cp "$work/expect4" "$work/expect6"
dd if="$work/c" of="$work/expect6" bs=1M seek=8 conv=notrunc status=none

# ---------------------------------------------------------------- recovery points, read-only
serve view "$r" --listen "unix://$work/view.sock" --listen tcp://127.0.0.1:0
view=$unix_uri

t nbdinfo --json "$view" >"$work/info.json"
python3 - "$work/info.json" "$size" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
assert e["export-size"] == int(sys.argv[2]), e
assert e["is_read_only"] is True and e["can_trim"] is False and e["can_zero"] is False, e
assert e["description"] == "recovery point seq 6", e
assert "base:allocation" in e["contexts"] and e["can_multi_conn"] is True, e
PY
t nbdinfo --list "$view" >"$work/list.txt"
grep -q '^export="@latest":' "$work/list.txt" || fail "--list lacks @latest: $(cat "$work/list.txt")"
grep -q '^export="":' "$work/list.txt" || fail "--list lacks the default export"

# The map: data exactly where data was written, the rest holes reading as zeros. A zero
# extent must read as zeros in the expected image; the zeros written at seq 4 may show as data.
t nbdinfo --map --json "$view" >"$work/map.json"
python3 - "$work/map.json" "$work/expect6" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
img = open(sys.argv[2], "rb").read()
assert sum(x["length"] for x in m) == len(img), m
data = [(x["offset"], x["length"]) for x in m if x["type"] & 1 == 0]
assert data == [(0, 65536), (1 << 20, 8192), (8 << 20, 4096)], m
for x in m:
    if x["type"] & 2:
        assert img[x["offset"]:x["offset"] + x["length"]].count(0) == x["length"], x
PY
t nbdinfo --map "$(at "$view" @2)" | awk '$3 == 0 {print $1, $2}' >"$work/map2.txt"
[[ $(cat "$work/map2.txt") == "0 65536" ]] || fail "map at @2: $(cat "$work/map2.txt")"

t nbdcopy "$view" "$work/copy6.img"
cmp "$work/copy6.img" "$work/expect6" || fail "nbdcopy of the latest point differs"
t nbdcopy "$tcp_uri" - | cmp - "$work/expect6" || fail "nbdcopy over TCP differs"
t qemu-img info --output=json "$view" | python3 -c '
import json, sys; j = json.load(sys.stdin); assert j["virtual-size"] == 16 << 20 and j["format"] == "raw", j'
t qemu-img convert -f raw -O qcow2 "$view" "$work/copy6.qcow2"
t qemu-img compare -f qcow2 -F raw "$work/copy6.qcow2" "$work/expect6" >/dev/null || fail "qcow2 copy differs"
t qemu-io -r -f raw -c 'read -P 0xa1 0 16k' -c 'read -P 0 16k 8k' -c 'read -P 0xa1 24k 40k' \
  -c 'read -P 0 64k 960k' -c 'read -P 0xc3 8M 4k' -c 'read -P 0 9M 7M' "$view" >"$work/qio.txt" \
  || fail "qemu-io pattern reads: $(cat "$work/qio.txt")"
grep -q 'Pattern verification failed' "$work/qio.txt" && fail "qemu-io: $(cat "$work/qio.txt")"

# Named points: by seq, by kind, by time; the same bytes each way.
for name in @2 @latest-app-consistent "@$t2"; do
  t nbdcopy "$(at "$view" "$name")" - | cmp - "$work/expect2" || fail "export $name is not point 2"
done
t nbdcopy "$(at "$tcp_uri" @6)" - | cmp - "$work/expect6" || fail "export @6 over TCP"
t nbdinfo --json "$(at "$view" "@$t2")" | grep -q '"description": "recovery point seq 2 ' \
  || fail "time $t2 did not resolve to seq 2"
t qemu-io -r -f raw -c 'read -P 0xa1 16k 8k' "$(at "$view" @2)" | grep -q 'read 8192/8192' \
  || fail "@2 does not show the data later zeroed"
expect_error "unknown export 'nosuch'" t qemu-img info "$(at "$view" nosuch)"
expect_error "nosuch" t nbdinfo "$(at "$view" nosuch)"
expect_error "point 99 is newer than the latest point 6" t qemu-img info "$(at "$view" @99)"
expect_error "cannot read point 'yesterday'" t qemu-img info "$(at "$view" @yesterday)"

# Read-only: clients refuse to open for writing, and a raw write gets EPERM from the server.
expect_error "Permission denied" t qemu-io -f raw -c 'write -P 0x55 0 4k' "$view"
t python3 - "$work/view.sock" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
def recv(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b)); assert c, "server closed"; b += c
    return b
assert recv(18)[:16] == b"NBDMAGICIHAVEOPT"
s.sendall(struct.pack(">I", 3))                                   # fixed newstyle, no zeroes
s.sendall(struct.pack(">QII", 0x49484156454F5054, 7, 6) + struct.pack(">IH", 0, 0))  # GO ""
while True:
    _, _, typ, ln = struct.unpack(">QIII", recv(20)); recv(ln)
    if typ != 3: break                                            # until the ACK
assert typ == 1, hex(typ)
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, 7, 0, 4) + b"evil")   # WRITE
magic, err, cookie = struct.unpack(">IIQ", recv(16))
assert (magic, err, cookie) == (0x67446698, 1, 7), (hex(magic), err, cookie)  # EPERM
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 8, 0, 4))     # READ still works
assert struct.unpack(">IIQ", recv(16)) == (0x67446698, 0, 8) and recv(4) == b"\xa1" * 4
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 2, 9, 0, 0))     # DISC
assert s.recv(1) == b""
PY

# Reads from several connections at once: fio (two jobs) and two more clients.
t fio --name=view --ioengine=nbd --uri="$view" --rw=randread --bs=4k --iodepth=16 --size=16M \
  --numjobs=2 --readonly --group_reporting >"$work/fio-view.txt" || fail "fio randread: $(cat "$work/fio-view.txt")"
grep -q 'err= 0' "$work/fio-view.txt" || fail "fio randread: $(cat "$work/fio-view.txt")"
t nbdcopy -C 4 "$tcp_uri" "$work/par1.img" &
c1=$!
t nbdcopy "$(at "$view" @2)" "$work/par2.img" &
c2=$!
wait "$c1" && wait "$c2" || fail "concurrent copies"
cmp "$work/par1.img" "$work/expect6" && cmp "$work/par2.img" "$work/expect2" || fail "concurrent copies differ"
stop view

# `replica serve --point`: the default export is that point, named by seq (a marker or any
# record) or by time; a point that cannot be read, or is not in the history, is refused with
# an error naming it.
for point in 2 4 "$t2"; do
  case $point in 4) expect=$work/expect4 seq=4 ;; *) expect=$work/expect2 seq=2 ;; esac
  serve point "$r" --point "$point" --listen "unix://$work/point.sock" --listen tcp://127.0.0.1:0
  t nbdinfo --json "$unix_uri" | grep -q "\"description\": \"recovery point seq $seq\"" \
    || fail "--point $point does not serve seq $seq: $(t nbdinfo --json "$unix_uri")"
  t nbdcopy "$unix_uri" - | cmp - "$expect" || fail "--point $point: the export differs from point $seq"
  t qemu-img compare -f raw -F raw "$tcp_uri" "$expect" >/dev/null || fail "--point $point: qemu-img compare over TCP"
  stop point
done
expect_error "--point: .*cannot read point 'yesterday'" t "$ferry" replica serve "$r" --point yesterday \
  --listen "unix://$work/bad.sock"
expect_error "cannot use point 99: .*point 99 is newer than the latest point 6" t "$ferry" replica serve "$r" \
  --point 99 --listen "unix://$work/bad.sock"

# ---------------------------------------------------------------- an overlay, read-write
serve overlay "$r" --overlay tfo --listen "unix://$work/o.sock" --listen tcp://127.0.0.1:0
ov=$unix_uri ov_tcp=$tcp_uri
t nbdinfo --json "$ov" | python3 -c '
import json, sys; e = json.load(sys.stdin)["exports"][0]
assert e["is_read_only"] is False and e["can_trim"] and e["can_zero"] and e["can_fua"], e
assert e["description"] == "overlay tfo over seq 6", e'
# Aligned, unaligned, FUA, zero and discard writes, then a flush; read back on a second
# connection over TCP.
t qemu-io -f raw -c 'write -P 0x11 0 64k' -c 'write -P 0x22 100 3000' -c 'write -f -P 0x33 5M 4k' \
  -c 'write -z 1M 64k' -c 'discard 8M 4k' -c 'flush' "$ov" >"$work/qw.txt" || fail "qemu-io writes: $(cat "$work/qw.txt")"
t qemu-io -r -f raw -c 'read -P 0x11 0 100' -c 'read -P 0x22 100 3000' -c 'read -P 0x11 3100 62436' \
  -c 'read -P 0x33 5M 4k' -c 'read -P 0 1M 64k' -c 'read -P 0 8M 4k' "$ov_tcp" >"$work/qr.txt" \
  || fail "qemu-io read-back: $(cat "$work/qr.txt")"
grep -q 'Pattern verification failed' "$work/qr.txt" && fail "overlay read-back: $(cat "$work/qr.txt")"
[[ $(grep -c '^read ' "$work/qr.txt") == 6 ]] || fail "overlay read-back: $(cat "$work/qr.txt")"
# Zeroes with NO_HOLE (qemu-io's write -z) are stored in the overlay's data.img as allocated
# blocks; with may-unmap (write -z -u) they take no space.
allocated() { sync "$r/overlays/tfo/data.img"; stat -c %b "$r/overlays/tfo/data.img"; }  # 512-byte units
before=$(allocated)
t qemu-io -f raw -c 'write -z 12M 1M' -c flush "$ov" >/dev/null || fail "qemu-io write -z"
kept=$(allocated)
((kept >= before + 2048)) || fail "zeroes with NO_HOLE took no space in the overlay ($before -> $kept sectors)"
t qemu-io -f raw -c 'write -z -u 13M 1M' -c flush "$ov" >/dev/null || fail "qemu-io write -z -u"
((($(allocated)) < kept + 2048)) || fail "zeroes that may unmap were stored as data in the overlay"
t qemu-io -r -f raw -c 'read -P 0 12M 2M' "$ov_tcp" | grep -q 'read 2097152/2097152' || fail "zeroed overlay range"

# fio: random writes from two connections (own halves of the disk), then verify each block.
t fio --name=ov --ioengine=nbd --uri="$ov" --rw=randwrite --bs=4k --iodepth=32 --size=4M \
  --offset_increment=4M --numjobs=2 --verify=crc32c --verify_fatal=1 --verify_state_save=0 --group_reporting \
  >"$work/fio-ov.txt" || fail "fio randwrite+verify: $(cat "$work/fio-ov.txt")"
grep -q 'err= 0' "$work/fio-ov.txt" || fail "fio randwrite+verify: $(cat "$work/fio-ov.txt")"

# A command flag on a command it does not belong to (libnbd sends it with its flag checks
# off) is refused with EINVAL and changes nothing; on its own command it is fine.
t /usr/bin/python3 - "$ov" <<'PY'
import errno, sys, nbd
h = nbd.NBD()
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_FLAGS)
h.connect_uri(sys.argv[1])
before = h.pread(4096, 0)
assert before != bytes(4096), "the test needs data there"
for name, call in [("write", lambda: h.pwrite(b"\x55" * 4096, 0, nbd.CMD_FLAG_NO_HOLE)),
                   ("trim", lambda: h.trim(4096, 0, nbd.CMD_FLAG_NO_HOLE)),
                   ("read", lambda: h.pread(4096, 0, nbd.CMD_FLAG_REQ_ONE))]:
    try:
        call()
    except nbd.Error as e:
        assert e.errnum == errno.EINVAL, (name, e)
    else:
        sys.exit(f"a {name} with a misplaced flag was accepted")
assert h.pread(4096, 0) == before, "a refused command changed the disk"
h.zero(4096, 0, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
assert h.pread(4096, 0) == bytes(4096)
h.shutdown()
PY

# nbdcopy both ways: a whole image into the overlay (with zero runs), then back out.
head -c "$size" /dev/urandom >"$work/img"
dd if=/dev/zero of="$work/img" bs=1M seek=3 count=2 conv=notrunc status=none
t nbdcopy --flush "$work/img" "$ov_tcp"
t nbdcopy -C 2 "$ov" "$work/back.img"
cmp "$work/back.img" "$work/img" || fail "overlay round trip differs"
# The point the overlay sits on is still there, unchanged, on the same server.
t nbdcopy "$(at "$ov" @latest)" - | cmp - "$work/expect6" || fail "@latest changed under the overlay"
stop overlay

# Restart: the overlay's data survived; the replica itself never changed.
serve overlay2 "$r" --overlay tfo --listen "unix://$work/o.sock" --listen tcp://127.0.0.1:0
t nbdcopy "$unix_uri" - | cmp - "$work/img" || fail "overlay data lost across a restart"
t nbdcopy "$(at "$tcp_uri" overlay/tfo)" - | cmp - "$work/img" || fail "overlay/tfo export differs"
stop overlay2
"$ferry" replica export "$r" --point latest --output "$work/final.img" >/dev/null
cmp "$work/final.img" "$work/expect6" || fail "the replica's latest point changed"
echo "nbd clients: all checks passed"
