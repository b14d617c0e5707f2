#!/usr/bin/env bash
# Builds the test guest from installed Debian packages: OUTDIR/vmlinuz (a copy of the
# kernel) and OUTDIR/initramfs.cpio.gz (static busybox, the virtio modules the kernel lacks,
# and tests/guest/init). Cached: does nothing when OUTDIR was built from the same inputs.
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

# The modules that give the guest /dev/vda, dependencies first; none if built in.
modules=()
add_module() {  # add_module PATH-RELATIVE-TO-MODDIR
  local m=$1 dep have
  for have in "${modules[@]}"; do [[ $have == "$m" ]] && return; done
  for dep in $(awk -F': *' -v m="$m" '$1 == m { print $2 }' "$moddir/modules.dep"); do add_module "$dep"; done
  modules+=("$m")
}
for name in virtio_pci virtio_blk; do
  grep -qE "/$name\.ko$" "$moddir/modules.builtin" 2>/dev/null && continue
  [[ -f $moddir/modules.dep ]] || fail "$moddir/modules.dep is missing: cannot find $name"
  path=$(grep -oE "^[^:]*/$name\.ko(\.xz|\.zst|\.gz)?:" "$moddir/modules.dep" | head -1 | tr -d :)
  [[ -n $path ]] || fail "$name is neither built into $version nor a module of it"
  add_module "$path"
done

# Inputs: this script, the init, the kernel, busybox and the modules. Same stamp: done.
stamp=$( { cat "$0" "$here/init"; echo "$kernel"; cksum "$kernel" "$busybox";
           for m in "${modules[@]}"; do echo "$m"; cksum <"$moddir/$m"; done; } | sha256sum | cut -d' ' -f1)
if [[ -f $out/stamp && $(cat "$out/stamp") == "$stamp" && -f $out/vmlinuz && -f $out/initramfs.cpio.gz ]]; then
  exit 0
fi

mkdir -p "$out"
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"  # the init links the other applets itself: faster than ~270 ln here
install -m 0755 "$here/init" "$root/init"
for m in "${modules[@]}"; do
  base=${m##*/}
  case $m in  # busybox insmod loads plain .ko files only
    *.ko.xz) xz -dc "$moddir/$m" >"$root/lib/modules/${base%.xz}" ;;
    *.ko.zst) zstd -qdc "$moddir/$m" >"$root/lib/modules/${base%.zst}" ;;
    *.ko.gz) gzip -dc "$moddir/$m" >"$root/lib/modules/${base%.gz}" ;;
    *) cp "$moddir/$m" "$root/lib/modules/$base" ;;
  esac
  echo "${base%.ko*}.ko" >>"$root/lib/modules/order"
done
touch "$root/lib/modules/order"
find "$root" -exec touch -h -d @0 {} +  # same inputs, same bytes
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
  gzip -n -6 >"$stage/initramfs.cpio.gz"
cp "$kernel" "$stage/vmlinuz"
mv -f "$stage/vmlinuz" "$stage/initramfs.cpio.gz" "$out/"
echo "$stamp" >"$out/stamp"
echo "build-guest: $out from $kernel ($(stat -c %s "$out/initramfs.cpio.gz") byte initramfs, modules: ${modules[*]##*/})"
