package pcieemu

import (
	"context"
	"fmt"
	"strings"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

// GetViolations returns the driver-conduct checker's violations so far, oldest first
// (docs/checker.md): only those of ruleIDs and of the functions in rids when given (nil = all),
// only those whose Sequence is greater than afterSequence. FAILED_PRECONDITION when the server
// runs with --check off; INVALID_ARGUMENT naming rule_ids[i] for an unknown rule id.
func (c *Client) GetViolations(ctx context.Context, ruleIDs []string, rids []uint32, afterSequence uint64) (*pb.GetViolationsResponse, error) {
	req := &pb.GetViolationsRequest{RuleIds: ruleIDs, AfterSequence: afterSequence}
	for i, r := range rids {
		if r > 0xffff {
			return nil, fmt.Errorf("rids[%d]: %#x is not a 16-bit routing ID", i, r)
		}
		req.Rids = append(req.Rids, FormatBDF(r))
	}
	ctx, cancel := c.call(ctx)
	defer cancel()
	return c.Trace.GetViolations(ctx, req)
}

// ClearViolations forgets the violations recorded so far and returns how many.
func (c *Client) ClearViolations(ctx context.Context) (int, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	r, err := c.Trace.ClearViolations(ctx, &pb.ClearViolationsRequest{})
	if err != nil {
		return 0, err
	}
	return int(r.Cleared), nil
}

// ViolationsError is AssertNoViolations' error: the checker recorded violations.
type ViolationsError struct {
	Violations []*pb.Violation
	Dropped    uint64 // violations the server did not keep (over its limit)
}

// Error lists each violation: requester, rule id, spec, event, what the hardware did, hint.
func (e *ViolationsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d driver-conduct violation(s)", len(e.Violations))
	if e.Dropped > 0 {
		fmt.Fprintf(&b, " (and %d not kept)", e.Dropped)
	}
	for _, v := range e.Violations {
		fmt.Fprintf(&b, "\n%s %s (%s): %s -> %s. Hint: %s", v.GetRequester(), v.GetRule().GetId(),
			v.GetRule().GetSpec(), v.GetEvent(), v.GetOutcome(), v.GetRule().GetHint())
	}
	return b.String()
}

// AssertNoViolations is the end of a driver test: a *ViolationsError listing every violation the
// checker recorded (of any severity), nil when there is none, or the RPC's error. It returns an
// error rather than taking a testing.TB so the package does not import testing and the caller
// chooses t.Fatal, t.Error or a retry: `if err := c.AssertNoViolations(ctx); err != nil { t.Fatal(err) }`.
func (c *Client) AssertNoViolations(ctx context.Context) error {
	r, err := c.GetViolations(ctx, nil, nil, 0)
	if err != nil {
		return err
	}
	if len(r.Violations) > 0 || r.Dropped > 0 {
		return &ViolationsError{Violations: r.Violations, Dropped: r.Dropped}
	}
	return nil
}
