#!/usr/bin/env bash
# tests/vm/qemu.sh: obtains QEMU >= 10.1 (the first release with the vfio-user-pci client) from
# Debian's source packages, builds qemu-system-x86_64 (TCG) and libvfio-user's sample servers, and
# installs both into a cache outside the clone, keyed by version:
#   $VM_CACHE/qemu-<debian version>/bin/qemu-system-x86_64
#   $VM_CACHE/qemu-<debian version>/firmware/          (-L: SeaBIOS + the x86 option ROMs built here)
#   $VM_CACHE/qemu-<debian version>/libvfio-user/bin/  (gpio-pci-idio-16, server, client samples)
# VM_CACHE is ${XDG_CACHE_HOME:-$HOME/.cache}/pcie-emu (or $PCIEEMU_VM_CACHE).
# A cached build is used without touching the network; --refresh asks the archive for a newer one.
# Prints the install directory on stdout (last line). Exit 2: no QEMU >= 10.1 source could be
# downloaded (the VM test reports a skip); exit 1: any other failure.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"

MIN_VERSION=10.1
REFRESH=0
[ "${1:-}" = "--refresh" ] && REFRESH=1

mkdir -p "$VM_CACHE"
exec 9> "$VM_CACHE/.qemu.lock"
flock 9

newest_cached() {
  local d best=""
  for d in "$VM_CACHE"/qemu-*/; do
    [ -f "$d/.complete" ] || continue
    best="$d"
  done
  [ -n "$best" ] && (cd "$best" && pwd)
}

if [ $REFRESH = 0 ] && cached="$(newest_cached)" && [ -n "$cached" ]; then
  log "QEMU cached: $cached"
  echo "$cached"
  exit 0
fi

# Build dependencies from the machine's own suite (bookworm): the compilers, glib, the x86 option
# ROMs' 16/32-bit toolchain, and libvfio-user's (json-c, cmocka).
vm_need_packages build-essential gcc-multilib pkgconf libglib2.0-dev zlib1g-dev \
  flex bison ninja-build python3 python3-venv python3-distlib dpkg-dev xz-utils seabios \
  libjson-c-dev libcmocka-dev

# Newer suites' sources for QEMU; bookworm-backports for meson >= 1.5 (bookworm's is 1.0).
vm_apt_update "deb-src http://deb.debian.org/debian sid main
deb-src http://deb.debian.org/debian forky main
deb-src http://deb.debian.org/debian trixie-backports main
deb-src http://deb.debian.org/debian trixie main
deb http://deb.debian.org/debian bookworm-backports main" || { log "apt-get update of the private state failed"; exit 2; }
mapfile -t APT < <(vm_apt_opts)

# Every listed QEMU source version >= MIN_VERSION, newest first; the newest listed is not always
# downloadable (the mirror drops superseded files), so take the first that downloads.
mapfile -t versions < <(apt-cache "${APT[@]}" showsrc qemu 2>/dev/null | sed -n 's/^Version: //p' | sort -u |
  while read -r v; do dpkg --compare-versions "$v" ge "1:$MIN_VERSION" && echo "$v"; done |
  sort -r -V)
[ ${#versions[@]} -gt 0 ] || { log "no QEMU >= $MIN_VERSION source package listed in sid/forky/trixie(-backports)"; exit 2; }

SRC_PARENT="$(mktemp -d "$VM_CACHE/qemu-src.XXXXXX")"
trap 'rm -rf "$SRC_PARENT"' EXIT
version=""
for v in "${versions[@]}"; do
  novers="${v#*:}"
  if [ $REFRESH = 1 ] && [ -f "$VM_CACHE/qemu-$novers/.complete" ]; then
    log "QEMU $novers is the newest downloadable version and is cached"
    echo "$VM_CACHE/qemu-$novers"; exit 0
  fi
  log "downloading QEMU source $v"
  if (cd "$SRC_PARENT" && apt-get "${APT[@]}" -qq source --download-only "qemu=$v" >&2 2>/dev/null); then
    version="$novers"; break
  fi
  log "QEMU $v is listed but does not download; trying an older one"
  rm -f "$SRC_PARENT"/*
done
[ -n "$version" ] || { log "no QEMU >= $MIN_VERSION source could be downloaded (tried: ${versions[*]})"; exit 2; }

PREFIX="$VM_CACHE/qemu-$version"
rm -rf "$PREFIX" && mkdir -p "$PREFIX"
SRC="$SRC_PARENT/qemu"
log "unpacking with dpkg-source -x (applies Debian's patches)"
dpkg-source -q -x "$SRC_PARENT"/qemu_*.dsc "$SRC" >&2

# meson >= 1.5, pure Python, from bookworm-backports: unpacked (not installed), used via PYTHONPATH.
meson_version="$(apt-cache "${APT[@]}" madison meson | awk -F'|' '/bookworm-backports/ {gsub(/ /,"",$2); print $2; exit}')"
[ -n "$meson_version" ] || die "meson is not listed in bookworm-backports"
MESON_DIR="$VM_CACHE/meson-$meson_version"
if [ ! -f "$MESON_DIR/.complete" ]; then
  log "fetching meson $meson_version from bookworm-backports"
  rm -rf "$MESON_DIR" && mkdir -p "$MESON_DIR"
  (cd "$SRC_PARENT" && apt-get "${APT[@]}" -qq download "meson=$meson_version" >&2)
  dpkg-deb -x "$SRC_PARENT"/meson_*.deb "$MESON_DIR/root"
  touch "$MESON_DIR/.complete"
fi
export PYTHONPATH="$MESON_DIR/root/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}"
MESON=(/usr/bin/python3 "$MESON_DIR/root/usr/bin/meson")

# QEMU: x86_64 system emulator, TCG, the vfio-user client (on by default on Linux, needs VFIO_PCI),
# nothing downloaded, no blobs installed, every optional feature off.
log "configuring QEMU $version (x86_64-softmmu, TCG)"
mkdir -p "$SRC/build"
(cd "$SRC/build" && ../configure --prefix="$PREFIX" --python=/usr/bin/python3 \
  --target-list=x86_64-softmmu --enable-tcg --disable-kvm --disable-xen \
  --without-default-features --disable-download --disable-install-blobs --disable-docs \
  --disable-werror --disable-debug-info --disable-user --disable-tools --disable-guest-agent \
  --disable-plugins >&2)
log "building QEMU $version with $(nproc) jobs (about 8 minutes on 2 cores)"
start=$SECONDS
# make (not ninja alone): it also builds pc-bios/optionrom with the 16/32-bit toolchain.
make -C "$SRC/build" -j"$(nproc)" >&2
log "QEMU built in $((SECONDS - start)) s"
make -C "$SRC/build" install >&2

# Firmware for -L: SeaBIOS from Debian's seabios package, the option ROMs from this build
# (linuxboot_dma.bin is what -kernel needs).
mkdir -p "$PREFIX/firmware"
cp /usr/share/seabios/bios-256k.bin "$PREFIX/firmware/"
roms=$(find "$SRC/build/pc-bios/optionrom" -name '*.bin' 2>/dev/null)
[ -n "$roms" ] || die "the x86 option ROMs were not built (gcc-multilib missing?)"
cp $roms "$PREFIX/firmware/"

# libvfio-user from QEMU's source tree, with its sample servers (the benchmark peer).
log "building libvfio-user and its samples"
LVU="$SRC/subprojects/libvfio-user"
"${MESON[@]}" setup "$LVU/build" "$LVU" --buildtype=release -Ddefault_library=static -Dprefix="$PREFIX/libvfio-user" >&2
ninja -C "$LVU/build" >&2
mkdir -p "$PREFIX/libvfio-user/bin"
for s in gpio-pci-idio-16 server client; do
  cp "$LVU/build/samples/$s" "$PREFIX/libvfio-user/bin/"
done

"$PREFIX/bin/qemu-system-x86_64" --version | head -1 > "$PREFIX/VERSION"
echo "$version" >> "$PREFIX/VERSION"
touch "$PREFIX/.complete"
log "QEMU $version installed in $PREFIX"
echo "$PREFIX"
