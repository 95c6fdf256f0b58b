package pcieemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// moduleRoot is this module's directory (the test runs in pcieemu/).
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestVersionIsTheClientsVersion(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "..", "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(string(b)); v != Version {
		t.Fatalf("pcieemu.Version is %s, clients/VERSION says %s", Version, v)
	}
}

// TestGeneratedCodeIsCurrent regenerates gen/pcieemuv1 from proto/ into a temporary directory
// and compares it with the committed code (run `make -C clients/go generate` when it fails).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	root := moduleRoot(t)
	tmp := t.TempDir()
	if out, err := exec.Command("bash", filepath.Join(root, "gen.sh"), tmp).CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, out)
	}
	fresh, _ := filepath.Glob(filepath.Join(tmp, "gen", "pcieemuv1", "*.go"))
	committed, _ := filepath.Glob(filepath.Join(root, "gen", "pcieemuv1", "*.go"))
	if len(fresh) == 0 {
		t.Fatal("gen.sh generated nothing")
	}
	names := map[string]bool{}
	for _, f := range committed {
		names[filepath.Base(f)] = true
	}
	for _, f := range fresh {
		name := filepath.Base(f)
		if !names[name] {
			t.Errorf("gen/pcieemuv1/%s is not committed: run make -C clients/go generate", name)
			continue
		}
		delete(names, name)
		want, _ := os.ReadFile(f)
		got, _ := os.ReadFile(filepath.Join(root, "gen", "pcieemuv1", name))
		if !bytes.Equal(got, want) {
			t.Errorf("gen/pcieemuv1/%s differs from what the protos generate: run make -C clients/go generate", name)
		}
	}
	for name := range names {
		t.Errorf("gen/pcieemuv1/%s has no proto any more: run make -C clients/go generate", name)
	}
}

const consumerMain = `package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/pcieemu/pcieemu/clients/go/pcieemu"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pcieemu.Dial(ctx, os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()
	fns, err := c.ListFunctions(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	id, err := c.ReadConfig32(ctx, pcieemu.MustParseBDF("01:00.0"), 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("client %s: %d functions, 01:00.0 id %08x\n", pcieemu.Version, len(fns), id)
}
`

// TestConsumerModule builds a small program in its own module outside the tree that requires
// github.com/pcieemu/pcieemu/clients/go (a replace directive points it at this directory, as a
// local checkout is used) and runs it against the test server over TCP with the token.
func TestConsumerModule(t *testing.T) {
	root := moduleRoot(t)
	dir := t.TempDir()
	gomod := fmt.Sprintf("module example.com/consumer\n\ngo 1.19\n\nrequire github.com/pcieemu/pcieemu/clients/go v%s\n\nreplace github.com/pcieemu/pcieemu/clients/go => %s\n", Version, root)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(consumerMain), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	env := os.Environ()
	if os.Getenv("GOWORK") != "" { // offline (test.sh): a workspace over Debian's Go sources for the consumer
		ws, err := exec.CommandContext(ctx, "bash", filepath.Join(root, "offline.sh"), filepath.Join(dir, ".offline"), dir).Output()
		if err != nil {
			t.Fatalf("offline.sh: %v", err)
		}
		env = append(env, "GOWORK="+strings.TrimSpace(string(ws)))
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", "consumer", ".")
	build.Dir, build.Env = dir, env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of the consumer: %v\n%s", err, out)
	}
	run := exec.CommandContext(ctx, filepath.Join(dir, "consumer"), testTCP)
	run.Env = os.Environ()
	if testTokenFile != "" {
		run.Env = append(run.Env, TokenVariable+"="+testToken(t))
	}
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("consumer: %v\n%s", err, out)
	}
	if want := "client " + Version + ": "; !strings.Contains(string(out), want) || !strings.Contains(string(out), "01:00.0 id 10c98086") {
		t.Fatalf("consumer printed %q", out)
	}
}
