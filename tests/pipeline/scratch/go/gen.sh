#!/usr/bin/env bash
# Scratch stand-in for clients/go/gen.sh: no protobuf code, only the GOPATH layout env.sh expects.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$here/.gopath/src"
ln -sfn "$here" "$here/.gopath/src/pcieemu"
