package pcieemu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// machineFile is docs/machines/NAME in the repository this package is in.
func machineFile(t *testing.T, name string) string {
	_, file, _, _ := runtime.Caller(0)
	here := filepath.Dir(file)
	if real, err := filepath.EvalSymlinks(here); err == nil { // built through the .gopath symlink
		here = real
	}
	p := filepath.Join(here, "../../../docs/machines", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("machine description: %v", err)
	}
	return p
}

// runVirtioNetExample builds and runs ../cmd/virtionet against target with the token in tokenFile.
func runVirtioNetExample(t *testing.T, target, tokenFile string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "go", "run", "../cmd/virtionet", target)
	cmd.Env = append(os.Environ(), TokenVariable+"="+strings.TrimSpace(string(token)))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The virtio-net example driver against a server started with docs/machines/virtio-net.json
// (an 82576 and a virtio-net device): reset, negotiate, queues, DRIVER_OK, one frame each way.
func TestVirtioNetExampleDriver(t *testing.T) {
	s, err := startServer("--machine", machineFile(t, "virtio-net.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	out, err := runVirtioNetExample(t, s.tcp, s.tokenFile)
	if err != nil {
		t.Fatalf("virtionet: %v\n%s", err, out)
	}
	for _, want := range []string{
		"virtio-net 03:00.0 (1af4:1041) on Ethernet port 2",
		"features 0x100000020 accepted (FEATURES_OK); mac 02:00:00:00:77:01",
		"DRIVER_OK: device_status 0xf",
		"TX: used len 0, CaptureFrames saw 60 bytes on port 2, identical",
		"RX: InjectFrame accepted=true, received 60 bytes, identical",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("virtionet output lacks %q:\n%s", want, out)
		}
	}
}

// On the default machine (no virtio-net device) the example says what to do and fails.
func TestVirtioNetExampleWithoutDevice(t *testing.T) {
	if testTokenFile == "" {
		t.Skip("the test server has no token file")
	}
	out, err := runVirtioNetExample(t, testTCP, testTokenFile)
	if err == nil || !strings.Contains(out, "no virtio-net function (1af4:1041)") || !strings.Contains(out, "--machine") {
		t.Fatalf("want a failure naming --machine, got %v:\n%s", err, out)
	}
}
