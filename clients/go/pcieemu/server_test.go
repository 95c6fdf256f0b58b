package pcieemu

import (
	"context"
	"fmt"
	"io/ioutil"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"
)

// The tests run against a real server: $PCIEEMU_TEST_TARGET (its token in $PCIEEMU_TEST_TOKEN_FILE),
// or one started here from $PCIEEMU_SERVER_DLL / src/PcieEmu.Server/bin/Release/net10.0/pcie-emu.dll
// with --token-file in its temporary directory.
var testTCP, testUnix, testTokenFile string

// dialTest connects to target with the test server's token file.
func dialTest(ctx context.Context, target string) (*Client, error) {
	return DialWith(ctx, target, Options{TokenFile: testTokenFile})
}

func serverDLL() (string, error) {
	if d := os.Getenv("PCIEEMU_SERVER_DLL"); d != "" {
		return d, nil
	}
	_, file, _, _ := runtime.Caller(0)
	here := filepath.Dir(file)
	if real, err := filepath.EvalSymlinks(here); err == nil { // built through the .gopath symlink
		here = real
	}
	dir := filepath.Join(here, "../../../src/PcieEmu.Server/bin/Release/net10.0")
	for _, n := range []string{"pcie-emu.dll", "PcieEmu.Server.dll"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return filepath.Join(dir, n), nil
		}
	}
	return "", fmt.Errorf("server not built: run 'dotnet build src/PcieEmu.Server -c Release' (looked in %s)", dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitServing polls the gRPC health service until it answers SERVING.
func waitServing(target string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var c *Client
		var err error
		if _, statErr := os.Stat(testTokenFile); statErr == nil || testTokenFile == "" {
			c, err = dialTest(ctx, target)
		} else {
			err = statErr
		}
		if err == nil {
			var r *grpc_health_v1.HealthCheckResponse
			r, err = grpc_health_v1.NewHealthClient(c.Conn()).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
			c.Close()
			if err == nil && r.Status == grpc_health_v1.HealthCheckResponse_SERVING {
				cancel()
				return nil
			}
		}
		cancel()
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("server at %s not SERVING after %s: %v", target, timeout, last)
}

func TestMain(m *testing.M) {
	if t := os.Getenv("PCIEEMU_TEST_TARGET"); t != "" {
		testTCP, testUnix, testTokenFile = t, os.Getenv("PCIEEMU_TEST_UNIX"), os.Getenv("PCIEEMU_TEST_TOKEN_FILE")
		if err := waitServing(testTCP, 60*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(m.Run())
	}
	dll, err := serverDLL()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	port, err := freePort()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	dir, _ := ioutil.TempDir("", "pcieemu-go-")
	testTCP = fmt.Sprintf("tcp://127.0.0.1:%d", port)
	testUnix = "unix://" + filepath.Join(dir, "pcie-emu.sock")
	testTokenFile = filepath.Join(dir, "token")
	cmd := exec.Command("dotnet", dll, "serve", "--listen", testTCP, "--listen", testUnix, "--token-file", testTokenFile,
		"--ram-file", filepath.Join(dir, "ram.bin"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start server:", err)
		os.Exit(2)
	}
	code := 2
	if err := waitServing(testTCP, 60*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	os.RemoveAll(dir)
	os.Exit(code)
}
