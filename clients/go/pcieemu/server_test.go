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

// waitServing polls the gRPC health service until it answers SERVING (with the token in tokenFile).
func waitServing(target, tokenFile string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var c *Client
		var err error
		if _, statErr := os.Stat(tokenFile); statErr == nil || tokenFile == "" {
			c, err = DialWith(ctx, target, Options{TokenFile: tokenFile})
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

// testServer is a server this package started: TCP, Unix socket and token file in a temporary directory.
type testServer struct {
	tcp, unix, tokenFile, dir string
	cmd                       *exec.Cmd
}

// startServer starts `pcie-emu serve` on a free TCP port and a temporary Unix socket, with extra
// arguments (e.g. --machine FILE), and waits until it is SERVING.
func startServer(extra ...string) (*testServer, error) {
	dll, err := serverDLL()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := ioutil.TempDir("", "pcieemu-go-")
	if err != nil {
		return nil, err
	}
	s := &testServer{tcp: fmt.Sprintf("tcp://127.0.0.1:%d", port), unix: "unix://" + filepath.Join(dir, "pcie-emu.sock"),
		tokenFile: filepath.Join(dir, "token"), dir: dir}
	args := append([]string{dll, "serve", "--listen", s.tcp, "--listen", s.unix, "--token-file", s.tokenFile,
		"--ram-file", filepath.Join(dir, "ram.bin")}, extra...)
	s.cmd = exec.Command("dotnet", args...)
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start server: %w", err)
	}
	if err := waitServing(s.tcp, s.tokenFile, 60*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// stop ends the server (SIGTERM, then SIGKILL after 5 s) and removes its directory.
func (s *testServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	os.RemoveAll(s.dir)
}

func TestMain(m *testing.M) {
	if t := os.Getenv("PCIEEMU_TEST_TARGET"); t != "" {
		testTCP, testUnix, testTokenFile = t, os.Getenv("PCIEEMU_TEST_UNIX"), os.Getenv("PCIEEMU_TEST_TOKEN_FILE")
		if err := waitServing(testTCP, testTokenFile, 60*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(m.Run())
	}
	s, err := startServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	testTCP, testUnix, testTokenFile = s.tcp, s.unix, s.tokenFile
	code := m.Run()
	s.stop()
	os.Exit(code)
}
