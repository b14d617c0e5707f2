#!/usr/bin/env bash
# Builds the test guest from installed Debian packages: OUTDIR/vmlinuz (a copy of the
# kernel) and OUTDIR/initramfs.cpio.gz (static busybox, the modules the kernel lacks,
# tests/guest/init and the service mode's *.script helpers). Cached: does nothing when OUTDIR
# was built from the same inputs.
# Modules: /lib/modules/order lists the disk's (virtio_pci, virtio_blk), which every mode
# loads; /lib/modules/order-service the service mode's extra ones (virtio_net, and button and
# evdev for the ACPI power button), without those already in order.
# Usage: build-guest.sh OUTDIR
# The kernel is the newest /boot/vmlinuz-*-cloud-amd64 (fewest drivers to probe, so the
# fastest boot under TCG), else the newest /boot/vmlinuz-*; FERRY_GUEST_KERNEL=/boot/vmlinuz-V
# picks another. Packages: see tools/install-deps (linux-image-cloud-amd64, busybox-static,
# cpio).
set -euo pipefail
(($# == 1)) || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "build-guest: $*" >&2; exit 1; }

kernel=${FERRY_GUEST_KERNEL:-}
if [[ -z $kernel ]]; then
  kernel=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -1 || true)
  [[ -n $kernel ]] || kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
fi
[[ -n $kernel && -r $kernel ]] || fail "no readable kernel in /boot (run tools/install-deps)"
version=${kernel##*/vmlinuz-}
moddir=/lib/modules/$version
busybox=/bin/busybox
[[ -x $busybox && $(ldd "$busybox" 2>&1) == *"not a dynamic executable"* ]] ||
  fail "$busybox is missing or not static (install busybox-static)"
command -v cpio >/dev/null || fail "cpio is missing (run tools/install-deps)"

# The modules the guest needs, dependencies first, each once; none if built in. The first
# $base_count give /dev/vda (every mode), the rest the service mode's network and power button.
modules=()
add_module() {  # add_module PATH-RELATIVE-TO-MODDIR
  local m=$1 dep have
  for have in "${modules[@]}"; do [[ $have == "$m" ]] && return; done
  for dep in $(awk -F': *' -v m="$m" '$1 == m { print $2 }' "$moddir/modules.dep"); do add_module "$dep"; done
  modules+=("$m")
}
add_named_modules() {  # add_named_modules NAME...
  local name path
  for name; do
    grep -qE "/$name\.ko$" "$moddir/modules.builtin" 2>/dev/null && continue
    [[ -f $moddir/modules.dep ]] || fail "$moddir/modules.dep is missing: cannot find $name"
    path=$(grep -oE "^[^:]*/$name\.ko(\.xz|\.zst|\.gz)?:" "$moddir/modules.dep" | head -1 | tr -d :)
    [[ -n $path ]] || fail "$name is neither built into $version nor a module of it"
    add_module "$path"
  done
}
add_named_modules virtio_pci virtio_blk
base_count=${#modules[@]}
add_named_modules virtio_net button evdev

# Inputs: this script, the init and its helpers, the kernel, busybox and the modules. Same
# stamp: done.
scripts=(udhcpc.script banner.script power-button.script)
stamp=$( { cat "$0" "$here/init"; for s in "${scripts[@]}"; do cat "$here/$s"; done; echo "$kernel"; cksum "$kernel" "$busybox";
           for m in "${modules[@]}"; do echo "$m"; cksum <"$moddir/$m"; done; } | sha256sum | cut -d' ' -f1)
if [[ -f $out/stamp && $(cat "$out/stamp") == "$stamp" && -f $out/vmlinuz && -f $out/initramfs.cpio.gz ]]; then
  exit 0
fi

mkdir -p "$out"
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules,etc/acpi/PWRF}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"  # the init links the other applets itself: faster than ~270 ln here
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/udhcpc.script" "$root/etc/udhcpc.script"
install -m 0755 "$here/banner.script" "$root/bin/banner"
# busybox acpid runs /etc/acpi/ACTION/PARAMETER; the power button is PWRF/00000080.
install -m 0755 "$here/power-button.script" "$root/etc/acpi/PWRF/00000080"
i=0
for m in "${modules[@]}"; do
  base=${m##*/}
  case $m in  # busybox insmod loads plain .ko files only
    *.ko.xz) xz -dc "$moddir/$m" >"$root/lib/modules/${base%.xz}" ;;
    *.ko.zst) zstd -qdc "$moddir/$m" >"$root/lib/modules/${base%.zst}" ;;
    *.ko.gz) gzip -dc "$moddir/$m" >"$root/lib/modules/${base%.gz}" ;;
    *) cp "$moddir/$m" "$root/lib/modules/$base" ;;
  esac
  if ((i < base_count)); then order=order; else order=order-service; fi
  echo "${base%.ko*}.ko" >>"$root/lib/modules/$order"
  i=$((i + 1))
done
touch "$root/lib/modules/order" "$root/lib/modules/order-service"
find "$root" -exec touch -h -d @0 {} +  # same inputs, same bytes
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
  gzip -n -6 >"$stage/initramfs.cpio.gz"
cp "$kernel" "$stage/vmlinuz"
mv -f "$stage/vmlinuz" "$stage/initramfs.cpio.gz" "$out/"
echo "$stamp" >"$out/stamp"
echo "build-guest: $out from $kernel ($(stat -c %s "$out/initramfs.cpio.gz") byte initramfs, modules: ${modules[*]##*/})"
