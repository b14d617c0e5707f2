#!/usr/bin/env bash
# Recovery time of one machine under TCG: from the failover request to the recovered
# machine's probe answering, split into its steps, side by side with a copy-based recovery
# (what DR products that restore a disk before they boot do: materialise the recovery point
# as a plain image, then boot from it) in the same run, on the same point.
#
# Setup (tests/lib/launch.sh): a server and two nodes with qemu launchers, machine vm1 (the
# test guest in service mode: it checks its records at boot, then serves a banner on port 7,
# the probe) with a DISK_GIB disk of which FILL_MIB are data, protected and running at the
# source. Then:
#   ferry  — ROUNDS test failovers to latest-processed (each cleaned up), and one failover to
#            latest-processed: request → job Succeeded (the boot step waits for the probe);
#            steps grouped as pre-flight, point preparation (resolve-point, create-overlays),
#            launch, boot.
#   copy   — qemu-img convert of the same point (a read-only view) to a raw file, then QEMU
#            from that file with the same kernel, the same probe.
# Both recovered machines run while the source machine keeps running, so the boots compare.
#
# Usage: bench/recovery_bench.sh BUILD_DIR [--disk-gib N] [--fill-mib N] [--rounds N]
# Defaults: 4 GiB disk, 1024 MiB of data, 3 rounds. Target: the preparation steps (pre-flight
# and point preparation) under 2 s.
set -euo pipefail
build=$(realpath "${1:?usage: $0 BUILD_DIR [--disk-gib N] [--fill-mib N] [--rounds N]}")
shift
disk_gib=4 fill_mib=1024 rounds=3
while (($#)); do
  case $1 in
    --disk-gib) disk_gib=$2; shift 2 ;;
    --fill-mib) fill_mib=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
ferry=$build/ferry
here=$(cd "$(dirname "$0")/../tests" && pwd)
py=/usr/bin/python3
work=$(mktemp -d /tmp/ferry-rbench.XXXXXX)
NODES="a b"
source "$here/lib/nodes.sh"
source "$here/lib/server.sh"
source "$here/lib/launch.sh"
peer_qemu=
trap 'if [[ -n $peer_qemu ]]; then { kill -KILL "$peer_qemu"; wait "$peer_qemu"; } 2>/dev/null || true; fi; launch_finish' EXIT

echo "== setup: ${disk_gib} GiB disk, ${fill_mib} MiB of data, TCG=$([[ -r /dev/kvm && -w /dev/kvm ]] && echo no || echo yes)"
launch_setup $((disk_gib << 30))
# Data past the guest's records (they start at block 0), through the splitter, before the
# guest boots: the copy-based peer has to move it, Ferry does not.
(((fill_mib + 256) <= (disk_gib << 10))) || { echo "--fill-mib must leave the first 256 MiB of the disk" >&2; exit 2; }
if ((fill_mib > 0)); then
  qemu-io -f raw -c "write -P 0x5a $((256 << 20)) $((fill_mib << 20))" "nbd+unix:///vm1.disk0?socket=$work/a.sock" >/dev/null
fi
start_source
# Wait until the target has caught up with the fill and the records (a point after them).
for _ in $(seq 1200); do
  pending=$(ok GET /items/item-1 | json 'j["disks"][0]["pending_bytes"]')
  ((pending == 0)) && break
  sleep 0.1
done
sleep 2

now() { echo "$EPOCHREALTIME"; }
elapsed() { "$py" -c "print('%.2f' % ($2 - $1))"; }
# groups JOB TOTAL: "preflight P prepare Q launch L boot B" from the job's step times.
groups() {
  job_steps "$1" | tr ' ' '\n' | awk -F= '
    $1 == "preflight" { pre += $2 }
    $1 == "resolve-point" || $1 == "create-overlays" { prep += $2 }
    $1 == "launch" { launch += $2 }
    $1 == "boot" { boot += $2 }
    END { printf "%.2f %.2f %.2f %.2f\n", pre, prep, launch, boot }'
}

declare -a totals=() preps=()
echo "== ferry: test failover to latest-processed, $rounds rounds"
printf '%-14s %8s %10s %12s %8s %8s\n' run total pre-flight preparation launch boot
for r in $(seq "$rounds"); do
  t0=$(now)
  job=$(ok POST /items/item-1/test-failover '{"point": "latest-processed"}' | job_of)
  wait_job "$job"
  t1=$(now)
  read -r pre prep launch boot < <(groups "$job")
  total=$(elapsed "$t0" "$t1")
  printf '%-14s %8s %10s %12s %8s %8s\n' "test $r" "$total" "$pre" "$prep" "$launch" "$boot"
  totals+=("$total")
  preps+=("$("$py" -c "print('%.2f' % ($pre + $prep))")")
  records_of "$(console test)" "test machine $r" >/dev/null
  job=$(ok POST /items/item-1/cleanup-test-failover '{"notes": "bench"}' | job_of)
  wait_job "$job"
done
t0=$(now)
job=$(ok POST /items/item-1/failover '{"point": "latest-processed"}' | job_of)
wait_job "$job"
t1=$(now)
read -r pre prep launch boot < <(groups "$job")
total=$(elapsed "$t0" "$t1")
printf '%-14s %8s %10s %12s %8s %8s\n' failover "$total" "$pre" "$prep" "$launch" "$boot"
totals+=("$total")
preps+=("$("$py" -c "print('%.2f' % ($pre + $prep))")")
records_of "$(console)" "recovered machine" >/dev/null
seq=$(ok GET /items/item-1 | json 'list(j["failover"]["seqs"].values())[0]')

echo "== copy: materialise the same point (seq $seq) as a raw image, then boot from it"
t0=$(now)
qemu-img convert -p -f raw -O raw "nbd+unix:///vm1.disk0@$seq?socket=$work/b.sock" "$work/peer.img" >/dev/null
t1=$(now)
port=$(free_port)
fw=()
[[ -f $qboot ]] && fw=(-bios "$qboot")
qemu-system-x86_64 -nodefaults -no-user-config -machine pc -accel tcg "${fw[@]}" -smp 1 -m 512 -display none \
  -serial "file:$work/peer-console.log" -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$port-:7" \
  -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio.gz" -append "$guest_cmdline" \
  -drive "file=$work/peer.img,format=raw,if=virtio,cache=none" </dev/null >"$work/peer-qemu.log" 2>&1 &
peer_qemu=$!
banner=
for _ in $(seq 1800); do
  banner=$("$py" - "$port" <<'PY' 2>/dev/null || true
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.settimeout(1)
print(s.recv(64).decode().strip())
PY
)
  [[ $banner == ferry-guest* ]] && break
  sleep 0.1
done
t2=$(now)
[[ $banner == ferry-guest* ]] || fail "the copy-based machine did not answer its probe: $(tail "$work/peer-console.log")"
copy=$(elapsed "$t0" "$t1")
peer_boot=$(elapsed "$t1" "$t2")
peer_total=$(elapsed "$t0" "$t2")
printf '%-14s %8s %10s %12s %8s %8s\n' copy "$peer_total" - "$copy" - "$peer_boot"

echo "== summary"
"$py" - "$peer_total" "$copy" "${totals[*]}" "${preps[*]}" <<'PY'
import statistics, sys
peer_total, copy = float(sys.argv[1]), float(sys.argv[2])
totals = [float(x) for x in sys.argv[3].split()]
preps = [float(x) for x in sys.argv[4].split()]
t, p = statistics.median(totals), max(preps)
print(f"ferry: request → probe median {t:.2f} s; preparation (pre-flight + point) at most {p:.2f} s")
print(f"copy:  request → probe {peer_total:.2f} s, of which copying the point {copy:.2f} s")
print(f"ratio: ferry / copy = {t / peer_total:.2f} (recovery time); preparation {p:.2f} s vs copy {copy:.2f} s = {p / copy:.3f}")
print(("PASS" if p < 2.0 else "FAIL") + f": preparation steps {p:.2f} s (target < 2 s)")
PY
