#!/usr/bin/env bash
# A consumer project outside the tree uses the INSTALLED client: installs the build into a
# temporary prefix (cmake --install), builds a small program with find_package(pcieemu) (MODE
# cmake) or with pkg-config (MODE pkg-config) and runs it against a running server over TCP.
# MODE add-subdirectory configures (only) a parent project that has its own `driver` and `bench`
# targets and pulls the client source in with add_subdirectory: no clash, no tests or examples.
# Usage: consumer.sh MODE BUILD_DIR WORK_DIR TARGET TOKEN_FILE   (run by ConsumerProject.* tests)
set -euo pipefail
mode=$1 build=$2 work=$3 target=$4 token_file=$5
prefix="$work/prefix"
rm -rf "$work" && mkdir -p "$work/src"
if [ "$mode" = add-subdirectory ]; then
  src=$(cd "$(dirname "$0")/.." && pwd)
  echo 'int main() { return 0; }' >"$work/src/main.cpp"
  cat >"$work/src/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(parent CXX)
add_executable(driver main.cpp)
add_executable(bench main.cpp)
add_subdirectory("$src" pcieemu)
target_link_libraries(driver PRIVATE pcieemu::pcieemu)
CMAKE
  cmake -S "$work/src" -B "$work/build"
  if grep -qE 'pcieemu_(tests|driver|bench)' "$work/build/Makefile"; then
    echo "the client's tests or examples are built inside a parent project"; exit 1
  fi
  echo "add_subdirectory: configured, pcieemu::pcieemu linked, no tests or examples"
  exit 0
fi
cmake --install "$build" --prefix "$prefix" >"$work/install.log"
cat >"$work/src/main.cpp" <<'CPP'
#include <pcieemu/pcieemu.hpp>
#include <pcieemu/pcieemu.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  auto c = pcieemu::Client::Connect(argv[1], std::chrono::seconds(10), {"", argv[2]});
  auto fns = c->ListFunctions();
  uint32_t id = c->ReadConfig32(pcieemu::ParseBdf("01:00.0"), 0);
  // The C API from the same library.
  pcieemu_t* emu = pcieemu_connect_token_file(argv[1], argv[2]);
  if (!emu) { std::fprintf(stderr, "C API: %s\n", pcieemu_last_error()); return 1; }
  uint32_t v = 0;
  int st = pcieemu_cfg_read(emu, 0x100, 0, 4, &v);
  pcieemu_close(emu);
  std::printf("%zu functions, 01:00.0 id %08x, C API %08x status %d\n", fns.size(), id, v, st);
  return id == v ? 0 : 1;
}
CPP
case $mode in
  cmake)
    cat >"$work/src/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.18)
project(consumer CXX)
find_package(pcieemu 0.2 REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE pcieemu::pcieemu)
CMAKE
    cmake -S "$work/src" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" >"$work/configure.log"
    cmake --build "$work/build" >"$work/build.log"
    exe="$work/build/consumer" ;;
  pkg-config)
    pc=$(dirname "$(find "$prefix" -name pcieemu.pc | head -1)")
    export PKG_CONFIG_PATH="$pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    echo "pcieemu $(pkg-config --modversion pcieemu)"
    # shellcheck disable=SC2046
    c++ -std=c++17 -o "$work/consumer" "$work/src/main.cpp" $(pkg-config --cflags --libs pcieemu)
    exe="$work/consumer" ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
"$exe" "$target" "$token_file"
