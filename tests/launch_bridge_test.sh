#!/usr/bin/env bash
# The qemu launcher's bridge network for real, isolated from the host's network: a network
# namespace of its own holds a bridge (brf0, 10.77.0.1/24) and busybox udhcpd, which leases
# 10.77.0.50 only. launch_tool runs inside the namespace (`ip netns exec`), so the QEMU it
# detaches stays there and qemu-bridge-helper makes its tap on that bridge. The test guest
# (tests/guest, ferry.mode=service) boots from a 64 MiB disk that qemu-nbd serves.
# Checks: QEMU lives in the namespace; the machine is Running with the probe ok, the probe
# connecting to the machine's own address (10.77.0.50:7, no forwarded port); the guest got
# 10.77.0.50 from udhcpd; a TCP connect from the namespace reads its banner; a graceful Stop
# powers it off. /etc/qemu/bridge.conf gets "allow brf0" for the test (created if missing) and
# is put back as it was at exit, with the namespace, udhcpd, qemu-nbd and the work dir gone.
# Usage: launch_bridge_test.sh LAUNCH_TOOL (as root). SKIP (exit 0) when the machine has no
# `ip` command or no network namespaces. The guest is built as in launch_qemu_test.sh.
set -euo pipefail
tool=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
command -v ip >/dev/null || { echo "SKIP: no ip command (iproute2)"; exit 0; }
for t in qemu-system-x86_64 qemu-nbd cpio python3; do
  command -v "$t" >/dev/null || { echo "FAIL: $t is missing (run tools/install-deps)" >&2; exit 1; }
done
helper=/usr/lib/qemu/qemu-bridge-helper
[[ -x $helper ]] || { echo "FAIL: $helper is missing (install qemu-system-common)" >&2; exit 1; }
[[ -x /bin/busybox ]] && /bin/busybox udhcpd --help >/dev/null 2>&1 ||
  { echo "FAIL: /bin/busybox has no udhcpd (install busybox-static)" >&2; exit 1; }
((EUID == 0)) || { echo "FAIL: needs root (a network namespace, /etc/qemu/bridge.conf)" >&2; exit 1; }

began=$EPOCHSECONDS
ns=ferry-br-$$
br=brf0
gw=10.77.0.1
ip_addr=10.77.0.50
conf=/etc/qemu/bridge.conf
work=$(mktemp -d /tmp/ferry-br.XXXXXX)  # short: the QMP socket path must fit 107 bytes
m=$work/m
ns_made=0 conf_state=  # conf_state: created-dir | created-file | appended (a copy in $work/bridge.conf.orig)
nsx() { ip netns exec "$ns" "$@"; }
gone() { [[ ! -e /proc/$1 ]]; }  # gone PID: exited and reaped (qemu-nbd's reaper is init)
cleanup() {
  set +e
  "$tool" stop "$m" --force >/dev/null 2>&1
  for _ in $(seq 50); do [[ -z $(qemu_pids) ]] && break; sleep 0.1; done
  local f pid
  for f in "$work/udhcpd.pid" "$work/nbd.pid"; do
    [[ -s $f ]] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do gone "$pid" && break; sleep 0.1; done
  done
  if ((ns_made)); then
    # Whatever is still in the namespace is ours (it is this test's own).
    for _ in $(seq 30); do
      pids=$(ip netns pids "$ns" 2>/dev/null)
      [[ -z $pids ]] && break
      kill $pids 2>/dev/null
      sleep 0.1
    done
    ip netns del "$ns"
  fi
  case $conf_state in
    created-dir) rm -f "$conf"; rmdir /etc/qemu ;;
    created-file) rm -f "$conf" ;;
    appended) cat "$work/bridge.conf.orig" >"$conf" ;;
  esac
  rm -rf "$work"
}
trap cleanup EXIT
source "$here/lib/launch_tool.sh"
fail_logs=("$work/udhcpd.log")

# 1. The namespace, its bridge and DHCP server.
if ! ip netns add "$ns" 2>"$work/netns.err"; then
  echo "SKIP: no network namespaces here: $(cat "$work/netns.err")"
  exit 0
fi
ns_made=1
nsx ip link set lo up
nsx ip link add "$br" type bridge || fail "cannot make bridge $br in $ns"
nsx ip addr add "$gw/24" dev "$br"
nsx ip link set "$br" up
: >"$work/udhcpd.leases"
cat >"$work/udhcpd.conf" <<CONF
interface $br
start $ip_addr
end $ip_addr
max_leases 1
lease_file $work/udhcpd.leases
pidfile $work/udhcpd.pid
option subnet 255.255.255.0
option router $gw
option lease 600
CONF
# -a 200: the ARP check before an offer waits 200 ms instead of 2 s.
nsx /bin/busybox udhcpd -f -a 200 "$work/udhcpd.conf" >"$work/udhcpd.log" 2>&1 &
for _ in $(seq 50); do [[ -s $work/udhcpd.pid ]] && break; sleep 0.1; done
[[ -s $work/udhcpd.pid ]] || fail "udhcpd did not start"

# 2. qemu-bridge-helper must be allowed to use the bridge.
if [[ ! -d /etc/qemu ]]; then
  mkdir /etc/qemu
  conf_state=created-dir
  echo "allow $br" >"$conf"
elif [[ ! -e $conf ]]; then
  conf_state=created-file
  echo "allow $br" >"$conf"
elif ! grep -qx "allow $br" "$conf"; then
  cp -p "$conf" "$work/bridge.conf.orig"
  conf_state=appended
  echo "allow $br" >>"$conf"
fi

# 3. The guest and its disk (served by qemu-nbd in the host's namespace: a unix socket).
"$here/guest/build-guest.sh" "$guest"
truncate -s 64M "$work/disk.img"
serve_disk "$work/disk.img"
firmware=()
[[ -f /usr/share/qemu/qboot.rom ]] && firmware=(--firmware /usr/share/qemu/qboot.rom)
cat >"$work/spec.json" <<JSON
{"name": "br-1", "disks": ["nbd+unix:///?socket=$work/nbd.sock"], "cpus": 1, "memory_mib": 256,
 "network": {"name": "lab", "mode": "bridge", "bridge": "$br"}, "ip_address": "$ip_addr",
 "kernel": "$guest/vmlinuz", "initrd": "$guest/initramfs.cpio.gz",
 "cmdline": "console=ttyS0 panic=-1 quiet no_timer_check cryptomgr.notests ferry.mode=service ferry.interval=0.2 ferry.count=20",
 "tcp_port": 7, "console_regex": "^ferry-guest: ready"}
JSON

# 4. Start inside the namespace; the detached QEMU must stay there, its tap on the bridge.
t0=$(now_ms)
out=$(nsx "$tool" "${firmware[@]}" start "$m" "$work/spec.json") || fail "start: $out"
pid=$(cat "$m/qemu.pid") || fail "no qemu.pid after start"
[[ $(qemu_pids) == "$pid" ]] || fail "expected one QEMU for $m (pid $pid), found: $(qemu_pids | tr '\n' ' ')"
ns_ino=$(stat -L -c %i "/run/netns/$ns")
[[ $(stat -L -c %i "/proc/$pid/ns/net") == "$ns_ino" ]] ||
  fail "QEMU $pid is not in namespace $ns (its net ns: $(readlink "/proc/$pid/ns/net"))"
ports=$(nsx ip -o link show master "$br" | awk -F': ' '{ print $2 }' | cut -d@ -f1)
[[ -n $ports ]] || fail "no tap on $br in $ns"
[[ -z $(ip -o link show master "$br" 2>/dev/null) ]] || fail "the host has a $br with ports: the test leaked out of $ns"

# 5. Running with the probe ok: the console regex and the banner at 10.77.0.50:7 itself.
# A deadline, not a count: a status whose probe finds nobody at the address takes a second.
st=
deadline=$((EPOCHSECONDS + 60))
while ((EPOCHSECONDS < deadline)); do
  st=$(nsx "$tool" status "$m") || fail "status: $st"
  load "$st"
  [[ $J_state == Failed ]] && fail "machine failed: $st"
  [[ $J_state == Running && $J_probe_ok == true ]] && break
  sleep 0.1
done
[[ $J_probe_ok == true ]] || fail "probe not ok 60 s after start: $st"
ready_ms=$(($(now_ms) - t0))
[[ $J_probe_address == "$ip_addr:7" ]] || fail "probe address '$J_probe_address', expected $ip_addr:7: $st"
[[ $J_probe_detail == *"sent 'ferry-guest "[0-9]* ]] || fail "the tcp probe saw no banner: $st"
accel=$J_accelerator
grep -qx "ferry-guest: network eth0 $ip_addr" "$m/console.log" || fail "the guest did not get $ip_addr from udhcpd"
banner=$(nsx python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], 7), timeout=5)
s.settimeout(5)
print(s.recv(100).decode().strip())' "$ip_addr") || fail "no banner from $ip_addr:7 in $ns"
[[ $banner =~ ^ferry-guest\ [0-9]+$ ]] || fail "banner '$banner' is not 'ferry-guest N'"
# The guest is the namespace's only: from the host no banner comes back. (A connect alone
# proves nothing: some sandboxes' upstream accepts TCP connects to any address.)
host_banner=$(python3 -c '
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], 7), timeout=1)
    s.settimeout(1)
    print(s.recv(100).decode(errors="replace").strip())
except OSError:
    pass' "$ip_addr")
[[ $host_banner != ferry-guest* ]] || fail "the guest's banner reaches the host's namespace too: the test is not isolated"

# 6. Graceful stop: the guest sees the power button and powers off; QEMU exits.
t1=$(now_ms)
out=$(nsx "$tool" stop "$m" --timeout-ms 30000) || fail "stop: $out"
stop_ms=$(($(now_ms) - t1))
[[ -z $(qemu_pids) ]] || fail "QEMU still runs after stop"
grep -q '^ferry-guest: powering off after record ' "$m/console.log" ||
  fail "the guest did not log its power-off (so QEMU was forced off)"
((stop_ms < 30000)) || fail "graceful stop took $stop_ms ms: the timeout, not the guest, ended it"
st=$(nsx "$tool" status "$m")
load "$st"
[[ $J_state == Stopped ]] || fail "status after stop: $st"

echo "launch bridge: guest on $br in $ns (tap ${ports//$'\n'/ }) got $ip_addr from udhcpd; Running with probe ok" \
     "at $ip_addr:7 after $ready_ms ms ($accel); banner '$banner'; graceful stop took $stop_ms ms"
echo "launch bridge: all checks passed ($((EPOCHSECONDS - began)) s)"
