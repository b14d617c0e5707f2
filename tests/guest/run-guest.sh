#!/usr/bin/env bash
# Boots the test guest (build-guest.sh) under QEMU with its data disk /dev/vda attached over
# NBD, waits until it powers off, and says how it went. KVM when QEMU can use it (tests/tools/kvm-usable.sh), else TCG.
# Usage: run-guest.sh --guest DIR --disk NBD_URI --log FILE [--timeout SECONDS]
#                     [--kill-when REGEX] [ferry.KEY=VALUE ...]
#   --disk       e.g. nbd+unix:///?socket=/tmp/x/sock or nbd://127.0.0.1:10809/
#   --log        the guest's serial console, written as it runs
#   --timeout    seconds from start to power-off (default 120)
#   --kill-when  SIGKILL QEMU as soon as a console line matches REGEX (grep -E): a power cut
#                at a chosen moment, for crash tests
#   ferry.*      appended to the kernel command line; see init for the modes
# Prints "run-guest: booted in S s" (QEMU start to "ferry-guest: booted") and how it ended.
# Exit status: 0 the guest printed "ferry-guest: done" and powered off, or was killed as
# --kill-when asked; 1 it stopped without "done" (the console says why) or QEMU failed;
# 124 the timeout passed (QEMU is killed). On a non-zero status the console goes to stderr.
set -euo pipefail
usage() { sed -n '4,10p' "$0" >&2; exit 2; }
guest= disk= log= timeout=120 kill_when=
args=()
while (($#)); do
  case $1 in
    --guest) guest=$2; shift 2 ;;
    --disk) disk=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --kill-when) kill_when=$2; shift 2 ;;
    ferry.*) args+=("$1"); shift ;;
    *) usage ;;
  esac
done
[[ -n $guest && -n $disk && -n $log ]] || usage
[[ -f $guest/vmlinuz && -f $guest/initramfs.cpio.gz ]] || { echo "run-guest: no guest in $guest (run build-guest.sh)" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "run-guest: qemu-system-x86_64 is missing (run tools/install-deps)" >&2; exit 1; }

if "$(dirname "$0")/../tools/kvm-usable.sh" 2>/dev/null; then accel=(-accel kvm -cpu host); else accel=(-accel tcg); fi
firmware=()  # qboot starts the kernel sooner than SeaBIOS does
[[ -f /usr/share/qemu/qboot.rom ]] && firmware=(-bios /usr/share/qemu/qboot.rom)
# panic=-1 with -no-reboot: a kernel panic ends QEMU at once instead of hanging to the timeout.
# quiet still prints errors. Boot time under TCG: no_timer_check skips the IO-APIC timer probe,
# cryptomgr.notests the crypto self-tests (a fifth of the CPU time to /init).
cmdline="console=ttyS0 panic=-1 quiet no_timer_check cryptomgr.notests ${args[*]}"
: >"$log"
qemu= qemu_err=$(mktemp)
trap '[[ -z $qemu ]] || kill -KILL $qemu 2>/dev/null || true; rm -f "$qemu_err"' EXIT
now_us() { local t=${EPOCHREALTIME//[.,]/}; echo "$t"; }
seconds_since() { local d=$(($(now_us) - $1)); printf '%d.%02d' $((d / 1000000)) $((d % 1000000 / 10000)); }
start=$(now_us)
qemu-system-x86_64 -nodefaults -no-user-config -machine pc "${accel[@]}" "${firmware[@]}" \
  -smp 1 -m 256 -display none -monitor none -serial "file:$log" -nic none -no-reboot \
  -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio.gz" -append "$cmdline" \
  -drive "file=$disk,format=raw,if=virtio,cache=none" </dev/null 2>"$qemu_err" &
qemu=$!

failed() {  # failed STATUS WHY: report with the console, exit STATUS
  echo "run-guest: $2" >&2
  if [[ -s $qemu_err ]]; then echo "---- qemu stderr" >&2; cat "$qemu_err" >&2; fi
  echo "---- guest console ($log)" >&2
  cat "$log" >&2
  echo "----" >&2
  exit "$1"
}

booted=
while kill -0 "$qemu" 2>/dev/null; do
  if [[ -z $booted ]] && grep -q '^ferry-guest: booted' "$log"; then
    booted=$(seconds_since "$start")
    echo "run-guest: booted in $booted s ($(grep -o '^ferry-guest: booted.*' "$log" | head -1))"
  fi
  if [[ -n $kill_when ]] && grep -qE -- "$kill_when" "$log"; then
    kill -KILL "$qemu"
    wait "$qemu" 2>/dev/null || true
    echo "run-guest: killed the guest at '$(grep -E -- "$kill_when" "$log" | head -1)' after $(seconds_since "$start") s"
    exit 0
  fi
  if (($(now_us) - start > timeout * 1000000)); then
    kill -KILL "$qemu"
    wait "$qemu" 2>/dev/null || true
    failed 124 "timed out after $timeout s"
  fi
  sleep 0.1
done
status=0
wait "$qemu" || status=$?
if [[ -z $booted ]]; then  # it went by between two looks, or never came
  booted=never
  if grep -q '^ferry-guest: booted' "$log"; then
    booted="under $(seconds_since "$start") s"
    echo "run-guest: booted in $booted"
  fi
fi
((status == 0)) || failed 1 "qemu exited with status $status (booted: $booted)"
[[ -n $kill_when ]] && failed 1 "the guest powered off before its console matched '$kill_when'"
grep -q '^ferry-guest: done' "$log" || failed 1 "the guest stopped without finishing (booted: $booted)"
echo "run-guest: powered off after $(seconds_since "$start") s"
