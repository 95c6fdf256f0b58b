package pcieemu

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"
)

// plaintext is the transport of a PcieEmu connection: HTTP/2 without TLS (h2c), over a Unix
// socket or TCP where the per-start token guards the calls. It is the transport credentials
// form of what grpc.WithInsecure (deprecated) selects; grpc-go's own credentials/insecure
// package appeared in 1.34, after the 1.33 Debian ships, so the client carries its own. Its
// security level is NoSecurity and its protocol is not "tls", so gRPC sends :scheme http.
type plaintext struct{}

type plaintextInfo struct{ credentials.CommonAuthInfo }

func (plaintextInfo) AuthType() string { return "insecure" }

func (plaintext) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return conn, plaintextInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
}

func (plaintext) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("pcieemu: plaintext credentials are for clients only")
}

func (plaintext) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "insecure"}
}

func (plaintext) Clone() credentials.TransportCredentials { return plaintext{} }

func (plaintext) OverrideServerName(string) error { return nil }
