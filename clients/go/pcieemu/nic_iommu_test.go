package pcieemu

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

// connected dials target for one test: a 30 s context, closed at the test's end.
func connected(t *testing.T, target string) (*Client, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c, err := dialTest(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, ctx
}

func frameTo(dst []byte) []byte {
	f := make([]byte, 60)
	copy(f, dst)
	copy(f[6:], []byte{0x02, 0x00, 0x00, 0x00, 0x99, 0x01})
	f[12], f[13] = 0x88, 0xb5
	return f
}

func TestInjectFrameToUnknownMACIsNotAccepted(t *testing.T) {
	c, ctx := connected(t, testTCP)
	r, err := c.InjectFrame(ctx, 0, frameTo([]byte{0x02, 0x00, 0x00, 0x00, 0x55, 0x55}))
	if err != nil {
		t.Fatal(err)
	}
	if r.Accepted || r.Queues != 0 {
		t.Fatalf("a frame for nobody was taken: %v", r)
	}
}

func TestInjectFrameErrorsNameTheField(t *testing.T) {
	c, ctx := connected(t, testTCP)
	for _, tc := range []struct {
		port  uint32
		frame []byte
		field string
	}{{5, frameTo([]byte{2, 0, 0, 0, 0, 1}), "port"}, {0, []byte{1, 2}, "data"}} {
		_, err := c.InjectFrame(ctx, tc.port, tc.frame)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.field) {
			t.Fatalf("port %d, %d bytes: %v, want INVALID_ARGUMENT naming %q", tc.port, len(tc.frame), err, tc.field)
		}
	}
}

func TestCaptureFramesOnAMissingPortIsRefused(t *testing.T) {
	c, ctx := connected(t, testTCP)
	capture, err := c.CaptureFrames(ctx, 5)
	if err == nil {
		_, err = capture.Opened()
		capture.Close()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("capture of port 5: %v, want INVALID_ARGUMENT", err)
	}
}

func TestCaptureFramesOpensAndCloses(t *testing.T) {
	c, ctx := connected(t, testUnix)
	capture, err := c.CaptureFrames(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := capture.Opened(); err != nil {
		t.Fatal(err)
	}
	capture.Close()
	if _, open := <-capture.C; open {
		t.Fatal("a frame arrived on an idle port")
	}
	if err := capture.Err(); err != nil {
		t.Fatalf("Close ended the stream with %v", err)
	}
}

func TestTranslateAddressAtResetIsDisabled(t *testing.T) {
	c, ctx := connected(t, testTCP)
	if err := c.ResetPlatform(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := c.TranslateAddress(ctx, 0x100, 0x1234_5000, TranslateOptions{Write: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != pb.TranslationStatus_TRANSLATION_STATUS_TRANSLATION_DISABLED || r.TranslatedAddress != 0x1234_5000 || r.FaultReason != 0 {
		t.Fatalf("translation at reset: %v", r)
	}
}

func TestContextDeadlineOverridesTheDefaultPerCall(t *testing.T) {
	c, ctx := connected(t, testTCP)
	if c.Timeout != 30*time.Second {
		t.Fatalf("default unary deadline %v, want 30s", c.Timeout)
	}
	past, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	if _, err := c.ReadConfig16(past, 0x100, 0); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a call whose context deadline passed: %v, want DEADLINE_EXCEEDED", err)
	}
	if v, err := c.ReadConfig16(ctx, 0x100, 0); err != nil || v != 0x8086 {
		t.Fatalf("vendor ID %#x, %v", v, err)
	}
}
