package pcieemu

import (
	"context"
	"io/ioutil"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

// noTokenAnywhere clears $PCIEEMU_TOKEN and points the runtime directory at an empty place.
func noTokenAnywhere(t *testing.T) string {
	t.Helper()
	dir, err := ioutil.TempDir("", "pcieemu-auth-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv(TokenVariable, "")
	t.Setenv("XDG_RUNTIME_DIR", dir)
	return dir
}

func testToken(t *testing.T) string {
	t.Helper()
	if testTokenFile == "" {
		t.Skip("the test server's token file is unknown (PCIEEMU_TEST_TOKEN_FILE)")
	}
	b, err := os.ReadFile(testTokenFile)
	must(t, err)
	return strings.TrimSpace(string(b))
}

func authCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAuthTokenFileIsPrivate(t *testing.T) {
	token := testToken(t)
	st, err := os.Stat(testTokenFile)
	must(t, err)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", st.Mode().Perm())
	}
	if len(token) != 64 {
		t.Fatalf("token has %d characters, want 64 hex digits", len(token))
	}
}

func TestAuthTCPWithoutTokenIsUnauthenticated(t *testing.T) {
	testToken(t)
	noTokenAnywhere(t)
	ctx := authCtx(t)
	c, err := Dial(ctx, testTCP)
	must(t, err)
	defer c.Close()
	if c.HasToken {
		t.Fatal("HasToken with no token anywhere")
	}
	if _, err := c.ReadConfig32(ctx, pf0, 0); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("ReadConfig32 without a token: %v, want UNAUTHENTICATED", err)
	}
	if _, err := grpc_health_v1.NewHealthClient(c.Conn()).Check(ctx, &grpc_health_v1.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("health check without a token: %v, want UNAUTHENTICATED", err)
	}
	// A wrong token, sent by hand, is refused the same way and a write has no effect.
	authed, err := dialTest(ctx, testTCP)
	must(t, err)
	defer authed.Close()
	before, err := authed.ReadConfig8(ctx, pf0, 0x3c)
	must(t, err)
	wrong := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.Repeat("0", 64))
	_, err = c.Config.WriteConfig(wrong, &pb.WriteConfigRequest{Rid: uint32(pf0), Offset: 0x3c, Width: 1, Value: uint32(before ^ 0xff)})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("WriteConfig with a wrong token: %v, want UNAUTHENTICATED", err)
	}
	after, err := authed.ReadConfig8(ctx, pf0, 0x3c)
	must(t, err)
	if after != before {
		t.Fatalf("an unauthenticated write changed 0x3c: %#x -> %#x", before, after)
	}
}

func TestAuthTCPWithTokenWorks(t *testing.T) {
	token := testToken(t)
	noTokenAnywhere(t)
	ctx := authCtx(t)
	for _, o := range []Options{{Token: token}, {TokenFile: testTokenFile}} {
		c, err := DialWith(ctx, testTCP, o)
		must(t, err)
		if v, err := c.ReadConfig32(ctx, pf0, 0); err != nil || v != 0x10c98086 {
			t.Fatalf("%+v: ID = %#x, %v", o, v, err)
		}
		// A stream carries it too.
		stream, err := c.Sessions.Transact(ctx)
		must(t, err)
		must(t, stream.Send(&pb.TransactRequest{Tag: 1, Op: &pb.TransactRequest_ConfigRead{ConfigRead: &pb.ConfigReadOp{Rid: uint32(pf0), Offset: 0, Width: 2}}}))
		resp, err := stream.Recv()
		must(t, err)
		if resp.Tag != 1 {
			t.Fatalf("completion tag %d", resp.Tag)
		}
		must(t, stream.CloseSend())
		c.Close()
	}
	if _, err := DialWith(ctx, testTCP, Options{TokenFile: "/nonexistent/token"}); err == nil {
		t.Fatal("an unreadable token file was accepted")
	}
}

func TestAuthTokenFromEnvironmentAndDefaultFile(t *testing.T) {
	token := testToken(t)
	dir := noTokenAnywhere(t)
	ctx := authCtx(t)
	t.Setenv(TokenVariable, token)
	c, err := Dial(ctx, testTCP)
	must(t, err)
	if v, err := c.ReadConfig32(ctx, pf0, 0); err != nil || v != 0x10c98086 {
		t.Fatalf("token from $PCIEEMU_TOKEN: ID = %#x, %v", v, err)
	}
	c.Close()

	t.Setenv(TokenVariable, "")
	must(t, os.Mkdir(filepath.Join(dir, "pcie-emu"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "pcie-emu", "token"), []byte(token+"\n"), 0o600))
	if DefaultTokenPath() != filepath.Join(dir, "pcie-emu", "token") {
		t.Fatalf("DefaultTokenPath() = %s", DefaultTokenPath())
	}
	c, err = Dial(ctx, testTCP)
	must(t, err)
	defer c.Close()
	if v, err := c.ReadConfig32(ctx, pf0, 0); err != nil || v != 0x10c98086 {
		t.Fatalf("token from the default file: ID = %#x, %v", v, err)
	}
}

func TestAuthUnixSocketNeedsNoToken(t *testing.T) {
	if testUnix == "" {
		t.Skip("no Unix socket target")
	}
	noTokenAnywhere(t)
	ctx := authCtx(t)
	c, err := Dial(ctx, testUnix)
	must(t, err)
	defer c.Close()
	if c.HasToken {
		t.Fatal("a Unix socket client sends a token")
	}
	if v, err := c.ReadConfig32(ctx, pf0, 0); err != nil || v != 0x10c98086 {
		t.Fatalf("ID over the Unix socket without a token = %#x, %v", v, err)
	}
}
