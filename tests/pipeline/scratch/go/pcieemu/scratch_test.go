package pcieemu

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestScratchPasses(t *testing.T) {}

// A subtest named like a conformance case: the summary counts it as a case run.
func TestConformanceCoreSubset(t *testing.T) {
	t.Run("config.pf0.ids", func(t *testing.T) {})
}

// With SCRATCH_MODE=crash a goroutine that is not a test's panics: no --- FAIL line is printed.
// Like the real tests' server, a child sharing the output is left behind.
func TestScratchPanicsOutsideATestWhenAsked(t *testing.T) {
	if os.Getenv("SCRATCH_MODE") != "crash" {
		return
	}
	child := exec.Command("sleep", "300")
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { panic("scratch: a panic outside any test goroutine") }()
	time.Sleep(5 * time.Second)
}

// With SCRATCH_MODE=timeout this test outlives go test's -timeout (PCIEEMU_GO_TEST_TIMEOUT=2s in
// the pipeline test): go test panics with "test timed out", again without a --- FAIL line.
func TestScratchOutlivesTheTimeoutWhenAsked(t *testing.T) {
	if os.Getenv("SCRATCH_MODE") != "timeout" {
		return
	}
	time.Sleep(20 * time.Second)
}
