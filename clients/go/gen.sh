#!/usr/bin/env bash
# Generates the Go protobuf and gRPC code from ../../proto into gen/pcieemuv1 (gitignored) and
# lays out a GOPATH (.gopath, gitignored) in which this directory is the package root "pcieemu".
# Builds offline against Debian's Go packages (golang-google-grpc-dev, golang-google-protobuf-dev).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto=$(cd "$here/../../proto" && pwd)
out="$here/gen/pcieemuv1"
rm -rf "$here/gen" && mkdir -p "$out"
files=()
mopts=()
for f in "$proto"/pcieemu/v1/*.proto; do
  rel=${f#"$proto"/}
  files+=("$rel")
  mopts+=("M$rel=pcieemu/gen/pcieemuv1;pcieemuv1")
done
goopt=$(IFS=,; echo "${mopts[*]}")
(cd "$proto" && protoc -I . \
  --go_out="$out" --go_opt=paths=source_relative,"$goopt" \
  --go-grpc_out="$out" --go-grpc_opt=paths=source_relative,"$goopt" \
  "${files[@]}")
# paths=source_relative puts files under pcieemu/v1/: flatten into the package directory.
mv "$out"/pcieemu/v1/* "$out"/ && rm -rf "$out/pcieemu"
mkdir -p "$here/.gopath/src"
ln -sfn "$here" "$here/.gopath/src/pcieemu"
