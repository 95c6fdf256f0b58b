package pcieemu

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestAssertNoViolations: NumVFs written while VF Enable is set (SRIOV.NUMVFS_WHILE_ENABLED)
// makes AssertNoViolations fail naming the rule; after ClearViolations it passes.
func TestAssertNoViolations(t *testing.T) {
	c, ctx := setup(t)
	_, err := c.ClearViolations(ctx)
	must(t, err)
	must(t, c.AssertNoViolations(ctx))
	// PF0's SR-IOV capability is at 0x160: NumVFs at +0x10, SR-IOV Control at +0x08.
	for _, w := range []struct {
		off int
		v   uint16
	}{{0x170, 2}, {0x168, 0x9}, {0x170, 1}} {
		_, err := c.WriteConfig16(ctx, pf0, w.off, w.v)
		must(t, err)
	}
	err = c.AssertNoViolations(ctx)
	var ve *ViolationsError
	if !errors.As(err, &ve) {
		t.Fatalf("AssertNoViolations = %v, want a *ViolationsError", err)
	}
	if len(ve.Violations) != 1 || ve.Violations[0].GetRule().GetId() != "SRIOV.NUMVFS_WHILE_ENABLED" ||
		ve.Violations[0].GetRequester() != "01:00.0" {
		t.Fatalf("violations = %v", ve.Violations)
	}
	for _, want := range []string{"SRIOV.NUMVFS_WHILE_ENABLED", "01:00.0", "Hint: Clear VF Enable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	r, err := c.GetViolations(ctx, []string{"VTD.FAULT"}, nil, 0)
	must(t, err)
	if len(r.Violations) != 0 {
		t.Errorf("rule filter: %v", r.Violations)
	}
	r, err = c.GetViolations(ctx, nil, []uint32{pf0}, 0)
	must(t, err)
	if len(r.Violations) != 1 {
		t.Errorf("rid filter: %v", r.Violations)
	}
	if _, err := c.GetViolations(ctx, []string{"NO.SUCH_RULE"}, nil, 0); status.Code(err) != codes.InvalidArgument ||
		!strings.HasPrefix(status.Convert(err).Message(), "rule_ids[0]") {
		t.Errorf("unknown rule: %v", err)
	}
	n, err := c.ClearViolations(ctx)
	must(t, err)
	if n != 1 {
		t.Errorf("ClearViolations = %d, want 1", n)
	}
	must(t, c.AssertNoViolations(ctx))
}
