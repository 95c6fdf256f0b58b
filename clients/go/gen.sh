#!/usr/bin/env bash
# Regenerates the committed Go protobuf and gRPC code (gen/pcieemuv1) from ../../proto with
# protoc-gen-go and protoc-gen-go-grpc (`make -C clients/go generate` runs this). The import path
# comes from the protos' go_package option; an M option per file maps a proto that lacks one to
# the same package. Usage: gen.sh [OUTDIR] (default: this module's root; test.sh generates into a
# temporary directory and compares, to prove the committed code is current).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto=$(cd "$here/../../proto" && pwd)
module=github.com/pcieemu/pcieemu/clients/go
root=${1:-$here}
mkdir -p "$root" && root=$(cd "$root" && pwd)
out="$root/gen/pcieemuv1"
rm -rf "$out" && mkdir -p "$out"
files=()
mopts=()
for f in "$proto"/pcieemu/v1/*.proto; do
  rel=${f#"$proto"/}
  files+=("$rel")
  mopts+=("M$rel=$module/gen/pcieemuv1;pcieemuv1")
done
goopt=$(IFS=,; echo "${mopts[*]}")
(cd "$proto" && protoc -I . \
  --go_out="$root" --go_opt=module=$module,"$goopt" \
  --go-grpc_out="$root" --go-grpc_opt=module=$module,"$goopt" \
  "${files[@]}")
