# Source this to build the Go module offline against Debian's Go sources (no module proxy):
#   . clients/go/env.sh && cd clients/go && go build ./...
# It writes a Go workspace (clients/go/.offline/go.work, gitignored) with offline.sh and points
# GOWORK at it. Elsewhere none of this is needed: the module builds with a normal `go get`.
_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOPROXY=off GOFLAGS= GOSUMDB=off GO111MODULE=on
GOWORK=$("$_here/offline.sh" "$_here/.offline" "$_here") && export GOWORK
unset _here
