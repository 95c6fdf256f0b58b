#!/usr/bin/env bash
# tests/vm/initramfs.sh: a tiny guest from the machine's own Debian suite: the distribution kernel
# (linux-image-*-amd64: vmlinuz, igbvf.ko and what modules.dep says it needs) and busybox-static,
# with an /init (tests/vm/init) that loads igbvf, brings its interface up and pings the wire.
# Packages are fetched with apt-get download (nothing is installed). Cached, keyed by kernel
# version and by the content of this script and of init:
#   $VM_CACHE/guest-<kernel version>-<hash>/{vmlinuz,initrd.cpio.gz,KERNEL}
# Prints that directory on stdout (last line).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"

MODULES=(igbvf)
hash="$(cat "$HERE/initramfs.sh" "$HERE/init" | sha256sum | cut -c1-12)"
mkdir -p "$VM_CACHE"
exec 9> "$VM_CACHE/.guest.lock"
flock 9

for d in "$VM_CACHE"/guest-*-"$hash"/; do
  if [ -f "$d/.complete" ]; then d="$(cd "$d" && pwd)"; log "guest cached: $d"; echo "$d"; exit 0; fi
done

vm_need_packages cpio gzip xz-utils zstd kmod
kpkg="$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)"
if [ -z "$kpkg" ] && [ "$(id -u)" = 0 ]; then apt-get update -qq >&2; kpkg="$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)"; fi
[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 to a kernel package (apt-get update?)"
kver="${kpkg#linux-image-}"
OUT="$VM_CACHE/guest-$kver-$hash"
PKGS="$VM_CACHE/debs"
mkdir -p "$PKGS"
log "kernel $kpkg, busybox-static (apt-get download into $PKGS)"
(cd "$PKGS" && { ls "${kpkg}"_*.deb >/dev/null 2>&1 || apt-get -qq -o APT::Sandbox::User=root download "$kpkg" >&2; } \
  && { ls busybox-static_*.deb >/dev/null 2>&1 || apt-get -qq -o APT::Sandbox::User=root download busybox-static >&2; })

WORK="$(mktemp -d "$VM_CACHE/guest-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
dpkg-deb -x "$(ls "$PKGS/${kpkg}"_*.deb | tail -1)" "$WORK/kernel"
dpkg-deb -x "$(ls "$PKGS"/busybox-static_*.deb | tail -1)" "$WORK/busybox"

R="$WORK/root"
mkdir -p "$R"/{bin,sbin,proc,sys,dev,tmp,lib/modules}
cp "$WORK/busybox/bin/busybox" "$R/bin/busybox"
cp "$HERE/init" "$R/init"
chmod 755 "$R/init" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"

# The modules and their dependencies, in load order (dependencies first), decompressed so that
# busybox insmod needs no decompressor (Debian compresses modules: .ko.xz in bookworm).
MODDIR="$WORK/kernel/lib/modules/$kver"
[ -d "$MODDIR" ] || die "no /lib/modules/$kver in $kpkg"
# modules.dep is made at install time, not shipped: make it for the unpacked tree.
depmod -b "$WORK/kernel" "$kver"
declare -A seen=()
order=()
add_module() {   # add_module PATH_RELATIVE_TO_MODDIR (as modules.dep names it)
  local m="$1" deps d
  [ -n "${seen[$m]:-}" ] && return 0
  seen[$m]=1
  deps="$(awk -F': *' -v m="$m" '$1 == m { print $2 }' "$MODDIR/modules.dep")"
  for d in $deps; do add_module "$d"; done
  order+=("$m")
}
for name in "${MODULES[@]}"; do
  path="$(awk -F: -v n="/$name.ko" '{ p = $1; sub(/\.(xz|zst|gz)$/, "", p) } substr(p, length(p) - length(n) + 1) == n { print $1; exit }' "$MODDIR/modules.dep")"
  [ -n "$path" ] || die "module $name not found in modules.dep of $kver"
  add_module "$path"
done
: > "$R/modules.load"
for m in "${order[@]}"; do
  base="$(basename "$m")"
  case "$m" in
    *.xz)  xz -dc "$MODDIR/$m" > "$R/lib/modules/${base%.xz}"; base="${base%.xz}" ;;
    *.zst) zstd -qdc "$MODDIR/$m" > "$R/lib/modules/${base%.zst}"; base="${base%.zst}" ;;
    *.gz)  gzip -dc "$MODDIR/$m" > "$R/lib/modules/${base%.gz}"; base="${base%.gz}" ;;
    *)     cp "$MODDIR/$m" "$R/lib/modules/$base" ;;
  esac
  echo "$base" >> "$R/modules.load"
done
log "modules (load order): $(tr '\n' ' ' < "$R/modules.load")"

rm -rf "$OUT" && mkdir -p "$OUT"
cp "$WORK/kernel/boot/vmlinuz-$kver" "$OUT/vmlinuz"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -9) > "$OUT/initrd.cpio.gz"
echo "$kver" > "$OUT/KERNEL"
touch "$OUT/.complete"
for d in "$VM_CACHE"/guest-*/; do   # older guests (another kernel or an older init)
  [ "$(cd "$d" && pwd)" = "$OUT" ] || rm -rf "$d"
done
log "guest in $OUT ($(du -h "$OUT/initrd.cpio.gz" | cut -f1) initramfs)"
echo "$OUT"
