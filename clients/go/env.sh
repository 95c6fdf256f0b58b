# Source this to build the Go client offline in GOPATH mode against Debian's Go packages
# (no module proxy): `. clients/go/env.sh && cd "$PCIEEMU_GO_ROOT" && go build ./...`
_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$_here/.gopath:/usr/share/gocode"
export PCIEEMU_GO_ROOT="$_here/.gopath/src/pcieemu"
unset _here
