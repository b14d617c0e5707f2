#!/usr/bin/env bash
# The qemu launcher against real QEMU (KVM when usable, else TCG), through the test driver
# launch_tool: the test guest (tests/guest, ferry.mode=service) boots from a 64 MiB disk that
# qemu-nbd serves, with a user-mode network that forwards a host port to its banner service.
# Checks: Start returns before the boot and is idempotent (one QEMU); the probe (console
# regex and TCP banner through the forwarded port) turns ok; the guest reads the records it
# found and writes more; a graceful Stop makes the guest power off by itself (ACPI power
# button) and QEMU exit; the disk holds exactly the records the console acknowledged; a
# QEMU that cannot open its disk fails Start with its own message; Remove deletes the dir.
# Usage: launch_qemu_test.sh LAUNCH_TOOL. The guest is built into FERRY_GUEST_DIR (default:
# guest/ beside the tool) and reused while its inputs stay the same.
set -euo pipefail
tool=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
for t in qemu-system-x86_64 qemu-nbd cpio python3; do
  command -v "$t" >/dev/null || { echo "FAIL: $t is missing (run tools/install-deps)" >&2; exit 1; }
done
began=$EPOCHSECONDS
work=$(mktemp -d /tmp/ferry-launch.XXXXXX)  # short: the QMP socket path must fit 107 bytes
m=$work/m
cleanup() {
  "$tool" stop "$m" --force >/dev/null 2>&1 || true
  "$tool" stop "$work/bad" --force >/dev/null 2>&1 || true
  [[ -f $work/nbd.pid ]] && kill "$(cat "$work/nbd.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
source "$here/lib/launch_tool.sh"

"$here/guest/build-guest.sh" "$guest"

# The disk: records 0..4 already there (the guest must find them), served by qemu-nbd.
python3 - "$work/disk.img" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    for i in range(5):
        rec = b"FERRYREC %d\n" % i
        f.write(rec + bytes(4096 - len(rec)))
    f.truncate(64 << 20)
PY
serve_disk "$work/disk.img"

firmware=()
[[ -f /usr/share/qemu/qboot.rom ]] && firmware=(--firmware /usr/share/qemu/qboot.rom)
spec() {  # spec DISK_URI: the machine spec
  cat <<JSON
{"name": "svc-1", "disks": ["$1"], "cpus": 1, "memory_mib": 256,
 "network": {"name": "default", "mode": "user", "subnet": "10.0.2.0/24"}, "ip_address": "10.0.2.20",
 "kernel": "$guest/vmlinuz", "initrd": "$guest/initramfs.cpio.gz",
 "cmdline": "console=ttyS0 panic=-1 quiet no_timer_check cryptomgr.notests ferry.mode=service ferry.interval=0.1",
 "tcp_port": 7, "console_regex": "^ferry-guest: ready"}
JSON
}
spec "nbd+unix:///?socket=$work/nbd.sock" >"$work/spec.json"

# 1. Start returns before the guest boots; a second Start is a no-op.
t0=$(now_ms)
out=$("$tool" "${firmware[@]}" start "$m" "$work/spec.json") || fail "start: $out"
start_ms=$(($(now_ms) - t0))
pid=$(cat "$m/qemu.pid") || fail "no qemu.pid after start"
out=$("$tool" "${firmware[@]}" start "$m" "$work/spec.json") || fail "second start: $out"
[[ $(cat "$m/qemu.pid") == "$pid" ]] || fail "second start replaced QEMU $pid by $(cat "$m/qemu.pid")"
[[ $(qemu_pids | wc -l) == 1 ]] || fail "expected one QEMU for $m, found: $(qemu_pids | tr '\n' ' ')"

# 2. Running with the probe ok: the console regex and the banner through the forwarded port.
st=
for _ in $(seq 600); do
  st=$("$tool" status "$m") || fail "status: $st"
  load "$st"
  [[ $J_state == Failed ]] && fail "machine failed: $st"
  [[ $J_state == Running && $J_probe_ok == true ]] && break
  sleep 0.1
done
[[ $J_probe_ok == true ]] || fail "probe not ok after 60 s: $st"
ready_ms=$(($(now_ms) - t0))
want_accel=tcg
"$here/tools/kvm-usable.sh" 2>/dev/null && want_accel=kvm
[[ $J_accelerator == "$want_accel" ]] || fail "accelerator $J_accelerator, expected $want_accel: $st"
addr=$J_probe_address
[[ $addr == 127.0.0.1:* ]] || fail "probe address '$addr' is not a forwarded local port"
[[ $J_probe_detail == *"sent 'ferry-guest "[0-9]* ]] || fail "the tcp probe saw no banner: $st"
running_ns=$J_running_ns
((running_ns > 0)) || fail "running_ns not set: $st"
probe_after_ms=$(((running_ns - J_started_ns) / 1000000))
uptime=$(sed -n 's/^ferry-guest: booted (uptime \([0-9.]*\))$/\1/p' "$m/console.log")
grep -qx 'ferry-guest: network eth0 10.0.2.20' "$m/console.log" || fail "the guest did not get 10.0.2.20 by DHCP"
grep -qx 'records 5 contiguous' "$m/console.log" || fail "the guest did not find the 5 records on its disk"
grep -qx 'verify ok' "$m/console.log" || fail "the guest's verify failed"

# 3. The guest writes records 5, 6, ...; the banner counts them (connect ourselves).
for _ in $(seq 300); do grep -qx 'wrote 9' "$m/console.log" && break; sleep 0.1; done
grep -qx 'wrote 9' "$m/console.log" || fail "the guest did not write records 5..9 within 30 s"
banner=$(python3 - "${addr%:*}" "${addr##*:}" <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.settimeout(5)
print(s.recv(100).decode().strip())
PY
) || fail "no banner from $addr"
[[ $banner =~ ^ferry-guest\ ([0-9]+)$ ]] || fail "banner '$banner' is not 'ferry-guest N'"
((BASH_REMATCH[1] >= 10)) || fail "banner counts ${BASH_REMATCH[1]} records, the console showed 10 or more"
load "$("$tool" console "$m" 0)"
grep -x 'ferry-guest: ready' <<<"$J_text" >/dev/null || fail "Console does not return the serial console"
((J_next == ${#J_text})) || fail "Console: next $J_next after ${#J_text} bytes from 0"
load "$("$tool" status "$m")"
[[ $J_running_ns == "$running_ns" ]] || fail "running_ns changed between two status calls: $running_ns, then $J_running_ns"
out=$("$tool" "${firmware[@]}" start "$m" "$work/spec.json") || fail "start while running: $out"
[[ $(qemu_pids | wc -l) == 1 && $(cat "$m/qemu.pid") == "$pid" ]] || fail "start while running started another QEMU"

# 4. Graceful stop: the guest sees the power button, finishes its record, powers off.
t1=$(now_ms)
out=$("$tool" stop "$m" --timeout-ms 30000) || fail "stop: $out"
stop_ms=$(($(now_ms) - t1))
[[ -z $(qemu_pids) ]] || fail "QEMU still runs after stop"
last=$(sed -n 's/^ferry-guest: powering off after record \([0-9]*\)$/\1/p' "$m/console.log")
[[ -n $last ]] || fail "the guest did not log its power-off (so QEMU was forced off)"
((stop_ms < 30000)) || fail "graceful stop took $stop_ms ms: the timeout, not the guest, ended it"
acked=$(grep -c '^wrote ' "$m/console.log")
((acked == last - 4)) || fail "console: $acked 'wrote' lines, but the guest powered off after record $last"
st=$("$tool" status "$m")
load "$st"
[[ $J_state == Stopped ]] || fail "status after stop: $st"
kill "$(cat "$work/nbd.pid")"
for _ in $(seq 50); do kill -0 "$(cat "$work/nbd.pid")" 2>/dev/null || break; sleep 0.1; done
python3 - "$work/disk.img" "$last" <<'PY' || fail "the disk does not hold records 0..$last"
import sys
data = open(sys.argv[1], "rb").read()
last = int(sys.argv[2])
n = 0
while data[n * 4096:(n + 1) * 4096] == (b"FERRYREC %d\n" % n).ljust(4096, b"\0"):
    n += 1
if n != last + 1 or data.find(b"FERRYREC", n * 4096) >= 0:
    sys.exit(f"disk: records 0..{n - 1} then more or fewer than the console's 0..{last}")
PY

# 5. A QEMU that cannot open its disk: Start fails with QEMU's message; Status says Failed.
spec "nbd+unix:///?socket=$work/nothing.sock" >"$work/bad.json"
out=$("$tool" "${firmware[@]}" start "$work/bad" "$work/bad.json") && fail "start with a dead disk succeeded: $out"
load "$out"
[[ $J_code == IoError && $J_message == *"QEMU exited at once with status 1: "*nothing.sock* ]] ||
  fail "start with a dead disk: $out"
st=$("$tool" status "$work/bad")
load "$st"
[[ $J_state == Failed ]] || fail "status after a failed start: $st"

# 6. Remove deletes the directory.
"$tool" remove "$m" >/dev/null || fail "remove"
[[ ! -e $m ]] || fail "remove left $m"

echo "launch qemu: start returned after $start_ms ms; /init ran at guest uptime $uptime s; Running with probe ok" \
     "$probe_after_ms ms after start (seen by the test after $ready_ms ms, $want_accel);" \
     "graceful stop after record $last took $stop_ms ms"
echo "launch qemu: all checks passed ($((EPOCHSECONDS - began)) s)"
