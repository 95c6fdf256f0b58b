// Command scratch exists so that `go build ./cmd/...` in clients/go/test.sh has something to build.
package main

func main() {}
