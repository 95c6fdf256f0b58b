// Package pcieemu is a Go client for the PcieEmu wire protocol (pcieemu.v1): config, MMIO and
// memory access, capability walks, Linux-style SR-IOV, the shared RAM file, interrupts as a
// channel, and the ordered Session stream. The protocol types are generated from proto/ into
// pcieemu/gen/pcieemuv1.
package pcieemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

// DefaultTarget is the server's default TCP endpoint.
const DefaultTarget = "tcp://127.0.0.1:50551"

// TokenVariable is the environment variable a client reads the TCP token from.
const TokenVariable = "PCIEEMU_TOKEN"

// DefaultRuntimeDir is the server's private runtime directory: $XDG_RUNTIME_DIR/pcie-emu when
// XDG_RUNTIME_DIR is an existing directory, else $TMPDIR/pcie-emu-USER. It holds the default
// socket and the default token file.
func DefaultRuntimeDir() string {
	if xdg := os.Getenv("XDG_RUNTIME_DIR"); xdg != "" {
		if st, err := os.Stat(xdg); err == nil && st.IsDir() {
			return filepath.Join(xdg, "pcie-emu")
		}
	}
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if name == "" {
		name = os.Getenv("USER")
	}
	return filepath.Join(os.TempDir(), "pcie-emu-"+name)
}

// DefaultUnixSocketPath is the server's default Unix socket: pcie-emu.sock in DefaultRuntimeDir().
func DefaultUnixSocketPath() string { return filepath.Join(DefaultRuntimeDir(), "pcie-emu.sock") }

// DefaultTokenPath is where the server writes its TCP token by default: token in DefaultRuntimeDir().
func DefaultTokenPath() string { return filepath.Join(DefaultRuntimeDir(), "token") }

// ResolveToken returns the TCP token a client sends, first found of: token; the file tokenFile
// (an error when it cannot be read); $PCIEEMU_TOKEN; the default token file when readable.
// "" when there is none (the server then answers UNAUTHENTICATED on TCP).
func ResolveToken(token, tokenFile string) (string, error) {
	if t := strings.TrimSpace(token); t != "" {
		return t, nil
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("token file %s is empty", tokenFile)
		}
		return t, nil
	}
	if t := strings.TrimSpace(os.Getenv(TokenVariable)); t != "" {
		return t, nil
	}
	if b, err := os.ReadFile(DefaultTokenPath()); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	return "", nil
}

// bearer sends "authorization: Bearer <token>" with every call (over plain TCP: the token is the
// guard, not the transport).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// Options are the optional settings of DialWith.
type Options struct {
	// Token is the server's TCP token; empty: TokenFile, $PCIEEMU_TOKEN, the default token file.
	Token string
	// TokenFile is a file holding the token (as written by `pcie-emu serve --token-file`).
	TokenFile string
}

// DefaultTargetNow is $PCIEEMU_TARGET, else the default Unix socket when it exists, else DefaultTarget.
func DefaultTargetNow() string {
	if t := os.Getenv("PCIEEMU_TARGET"); t != "" {
		return t
	}
	if sock := DefaultUnixSocketPath(); fileExists(sock) {
		return "unix://" + sock
	}
	return DefaultTarget
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Client is a connection to a PcieEmu server. Its methods are safe for concurrent use.
type Client struct {
	conn       *grpc.ClientConn
	Platform   pb.PlatformServiceClient
	Config     pb.ConfigServiceClient
	Mmio       pb.MmioServiceClient
	Memory     pb.MemoryServiceClient
	Interrupts pb.InterruptServiceClient
	Sessions   pb.SessionServiceClient
	Ethernet   pb.EthernetServiceClient
	Iommu      pb.IommuServiceClient
	Trace      pb.TraceServiceClient
	// Timeout bounds each unary call made by the helpers (30 s by default).
	Timeout time.Duration
	// HasToken tells whether calls carry a token (TCP with a token found).
	HasToken bool
}

// Dial connects to "tcp://host:port", "host:port" or "unix:///path" (empty: DefaultTargetNow())
// and waits until the connection is up or ctx ends. On TCP every call carries the token found by
// ResolveToken("", "") ($PCIEEMU_TOKEN, else the default token file); a Unix socket needs none.
func Dial(ctx context.Context, target string) (*Client, error) {
	return DialWith(ctx, target, Options{})
}

// DialWith is Dial with an explicit token or token file for TCP.
func DialWith(ctx context.Context, target string, o Options) (*Client, error) {
	if target == "" {
		target = DefaultTargetNow()
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(plaintext{}), grpc.WithBlock(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20))}
	var dialTarget string
	switch {
	case strings.HasPrefix(target, "unix:"):
		path := strings.TrimPrefix(strings.TrimPrefix(target, "unix:"), "//")
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("%q: a unix target needs an absolute path (unix:///run/x.sock)", target)
		}
		// Kestrel checks the Host header (:authority): send "localhost", not the socket path.
		dialTarget = "localhost"
		opts = append(opts, grpc.WithAuthority("localhost"),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			}))
	case strings.HasPrefix(target, "tcp://"):
		dialTarget = strings.TrimSuffix(strings.TrimPrefix(target, "tcp://"), "/")
	case strings.HasPrefix(target, "http://"):
		dialTarget = strings.TrimSuffix(strings.TrimPrefix(target, "http://"), "/")
	case strings.Contains(target, ":") && !strings.Contains(target, "/"):
		dialTarget = target
	default:
		return nil, fmt.Errorf("%q: expected unix:///path or tcp://host:port", target)
	}
	hasToken := false
	if !strings.HasPrefix(target, "unix:") {
		token, err := ResolveToken(o.Token, o.TokenFile)
		if err != nil {
			return nil, err
		}
		if token != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
			hasToken = true
		}
	}
	conn, err := grpc.DialContext(ctx, dialTarget, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", target, err)
	}
	return &Client{
		conn:       conn,
		Platform:   pb.NewPlatformServiceClient(conn),
		Config:     pb.NewConfigServiceClient(conn),
		Mmio:       pb.NewMmioServiceClient(conn),
		Memory:     pb.NewMemoryServiceClient(conn),
		Interrupts: pb.NewInterruptServiceClient(conn),
		Sessions:   pb.NewSessionServiceClient(conn),
		Ethernet:   pb.NewEthernetServiceClient(conn),
		Iommu:      pb.NewIommuServiceClient(conn),
		Trace:      pb.NewTraceServiceClient(conn),
		Timeout:    30 * time.Second,
		HasToken:   hasToken,
	}, nil
}

// Conn is the underlying gRPC connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) call(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.Timeout)
}

// GetPlatform describes the machine.
func (c *Client) GetPlatform(ctx context.Context) (*pb.GetPlatformResponse, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	return c.Platform.GetPlatform(ctx, &pb.GetPlatformRequest{})
}

// ListFunctions lists every function that answers config requests now, in routing-ID order.
func (c *Client) ListFunctions(ctx context.Context) ([]*pb.Function, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	r, err := c.Platform.ListFunctions(ctx, &pb.ListFunctionsRequest{})
	if err != nil {
		return nil, err
	}
	return r.Functions, nil
}

// ResetPlatform cold-resets the machine.
func (c *Client) ResetPlatform(ctx context.Context) error {
	ctx, cancel := c.call(ctx)
	defer cancel()
	_, err := c.Platform.ResetPlatform(ctx, &pb.ResetPlatformRequest{})
	return err
}

// ConfigRead is a config read's completion. On UNSUPPORTED_REQUEST Value is all ones.
type ConfigRead struct {
	Status pb.CompletionStatus
	Value  uint32
}

// ReadConfig reads 1, 2 or 4 bytes of config space.
func (c *Client) ReadConfig(ctx context.Context, rid uint32, offset, width int) (ConfigRead, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	r, err := c.Config.ReadConfig(ctx, &pb.ReadConfigRequest{Rid: uint32(rid), Offset: uint32(offset), Width: uint32(width)})
	if err != nil {
		return ConfigRead{}, err
	}
	return ConfigRead{r.Status, r.Value}, nil
}

// WriteConfig writes 1, 2 or 4 bytes of config space.
func (c *Client) WriteConfig(ctx context.Context, rid uint32, offset, width int, value uint32) (pb.CompletionStatus, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	r, err := c.Config.WriteConfig(ctx, &pb.WriteConfigRequest{Rid: uint32(rid), Offset: uint32(offset), Width: uint32(width), Value: value})
	if err != nil {
		return 0, err
	}
	return r.Status, nil
}

// ReadConfig8 reads a byte (all ones on UR, as hardware returns).
func (c *Client) ReadConfig8(ctx context.Context, rid uint32, offset int) (uint8, error) {
	r, err := c.ReadConfig(ctx, rid, offset, 1)
	return uint8(r.Value), err
}

// ReadConfig16 reads a word.
func (c *Client) ReadConfig16(ctx context.Context, rid uint32, offset int) (uint16, error) {
	r, err := c.ReadConfig(ctx, rid, offset, 2)
	return uint16(r.Value), err
}

// ReadConfig32 reads a dword.
func (c *Client) ReadConfig32(ctx context.Context, rid uint32, offset int) (uint32, error) {
	r, err := c.ReadConfig(ctx, rid, offset, 4)
	return r.Value, err
}

// WriteConfig8 writes a byte.
func (c *Client) WriteConfig8(ctx context.Context, rid uint32, offset int, v uint8) (pb.CompletionStatus, error) {
	return c.WriteConfig(ctx, rid, offset, 1, uint32(v))
}

// WriteConfig16 writes a word.
func (c *Client) WriteConfig16(ctx context.Context, rid uint32, offset int, v uint16) (pb.CompletionStatus, error) {
	return c.WriteConfig(ctx, rid, offset, 2, uint32(v))
}

// WriteConfig32 writes a dword.
func (c *Client) WriteConfig32(ctx context.Context, rid uint32, offset int, v uint32) (pb.CompletionStatus, error) {
	return c.WriteConfig(ctx, rid, offset, 4, v)
}

// ReadMmio reads 1, 2, 4 or 8 naturally aligned bytes of memory space.
func (c *Client) ReadMmio(ctx context.Context, address uint64, width int) (pb.CompletionStatus, uint64, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	r, err := c.Mmio.ReadMmio(ctx, &pb.ReadMmioRequest{Address: address, Width: uint32(width)})
	if err != nil {
		return 0, 0, err
	}
	return r.Status, r.Value, nil
}

// WriteMmio writes 1, 2, 4 or 8 naturally aligned bytes of memory space.
func (c *Client) WriteMmio(ctx context.Context, address uint64, width int, value uint64) (pb.CompletionStatus, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	r, err := c.Mmio.WriteMmio(ctx, &pb.WriteMmioRequest{Address: address, Width: uint32(width), Value: value})
	if err != nil {
		return 0, err
	}
	return r.Status, nil
}

// ReadMemory reads host RAM over RPC.
func (c *Client) ReadMemory(ctx context.Context, address uint64, length int) ([]byte, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	r, err := c.Memory.ReadMemory(ctx, &pb.ReadMemoryRequest{Address: address, Length: uint32(length)})
	if err != nil {
		return nil, err
	}
	return r.Data, nil
}

// WriteMemory writes host RAM over RPC.
func (c *Client) WriteMemory(ctx context.Context, address uint64, data []byte) error {
	ctx, cancel := c.call(ctx)
	defer cancel()
	_, err := c.Memory.WriteMemory(ctx, &pb.WriteMemoryRequest{Address: address, Data: data})
	return err
}
