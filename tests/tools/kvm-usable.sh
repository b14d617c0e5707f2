#!/usr/bin/env bash
# kvm-usable.sh: exit 0 when QEMU can run a machine with KVM and the host's CPU here, else 1
# (the reason on stderr). /dev/kvm may be there and answer while QEMU still aborts on the
# vCPU's MSRs (nested hosts); the launcher's probe (src/launch/accelerator.cc) is the same.
set -uo pipefail
[[ -r /dev/kvm && -w /dev/kvm ]] || { echo "kvm-usable: /dev/kvm is not readable and writable" >&2; exit 1; }
out=$(printf '%s\n' '{"execute": "qmp_capabilities"}' '{"execute": "quit"}' |
  timeout 20 qemu-system-x86_64 -nodefaults -no-user-config -machine pc -accel kvm -cpu host -m 16 \
    -display none -monitor none -serial none -S -qmp stdio 2>&1) ||
  { echo "kvm-usable: qemu with KVM failed: $(tail -c 300 <<<"$out")" >&2; exit 1; }
exit 0
