# Shared helpers for tests/vm/*.sh (sourced, not run).

VM_CACHE="${PCIEEMU_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pcie-emu}"

log() { printf '[vm %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The private apt state: Debian's archive with suites newer than the machine's, used only through
# -o options; the machine's own apt sources are never touched.
VM_APT_DIR="$VM_CACHE/apt"
vm_apt_opts() {
  printf '%s\n' -o "Dir::Etc::sourcelist=$VM_APT_DIR/sources.list" -o "Dir::Etc::sourceparts=$VM_APT_DIR/sources.list.d" \
    -o "Dir::State::Lists=$VM_APT_DIR/lists" -o "Dir::Cache=$VM_APT_DIR/cache" -o "APT::Get::List-Cleanup=0" \
    -o "APT::Sandbox::User=root"
}

# vm_apt_update SOURCES_TEXT: (re)writes the private sources list and fetches its indexes.
vm_apt_update() {
  mkdir -p "$VM_APT_DIR/lists/partial" "$VM_APT_DIR/cache/archives/partial" "$VM_APT_DIR/sources.list.d"
  printf '%s\n' "$1" > "$VM_APT_DIR/sources.list"
  local -a o; mapfile -t o < <(vm_apt_opts)
  apt-get "${o[@]}" -qq update >&2
}

# vm_need_packages PKG...: installs the Debian packages (of the machine's own suite) that are missing,
# with apt-get when root, else prints the one command to run and fails.
vm_need_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
      || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; } \
      || die "apt-get install ${missing[*]} failed"
  else
    die "missing Debian packages; run: sudo apt-get install --no-install-recommends ${missing[*]}"
  fi
}
