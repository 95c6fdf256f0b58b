package pcieemu

import (
	"context"
	"fmt"
	"time"
)

// ARIMode says whether EnableSRIOV uses ARI (Alternative Routing-ID Interpretation).
type ARIMode int

const (
	// ARIAuto (the default) uses ARI when the hierarchy supports it: the upstream port supports
	// ARI Forwarding and the PF has an ARI capability (as Linux does).
	ARIAuto ARIMode = iota
	// ARIOff clears ARI Forwarding Enable and ARI Capable Hierarchy (VFs then sit on the next
	// bus, device 0x10 and up).
	ARIOff
	// ARIOn requires ARI: an error when the hierarchy does not support it.
	ARIOn
)

// SRIOVOptions tunes EnableSRIOV.
type SRIOVOptions struct {
	// ARI: ARIAuto (default), ARIOff or ARIOn.
	ARI ARIMode
	// Settle is the wait after VF Enable changes (default 100 ms, the spec's settle time).
	Settle time.Duration
}

func settle(d time.Duration) time.Duration {
	if d <= 0 {
		return 100 * time.Millisecond
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// EnableSRIOV enables numVFs VFs on the PF at pf the way Linux does: checks TotalVFs and that VF
// Enable is clear; when the upstream port supports ARI Forwarding and the PF has an ARI capability,
// sets (with ARIOff clears) ARI Forwarding Enable in the port and ARI Capable Hierarchy in
// function 0; writes NumVFs; rereads First VF Offset and VF Stride (they depend on both); checks
// the VFs fit under the port's subordinate bus; then sets VF Enable and VF MSE in one write and
// waits. It returns the VFs' routing IDs.
func (c *Client) EnableSRIOV(ctx context.Context, pf uint32, numVFs int, opt SRIOVOptions) ([]uint32, error) {
	sriov, err := c.FindExtendedCapability(ctx, pf, ExtCapIDSRIOV)
	if err != nil {
		return nil, err
	}
	if sriov == 0 {
		return nil, fmt.Errorf("%s has no SR-IOV capability", FormatBDF(pf))
	}
	total, err := c.ReadConfig16(ctx, pf, sriov+SriovTotalVFs)
	if err != nil {
		return nil, err
	}
	if numVFs < 1 || numVFs > int(total) {
		return nil, fmt.Errorf("numVFs must be 1..%d (TotalVFs), was %d", total, numVFs)
	}
	ctl, err := c.ReadConfig16(ctx, pf, sriov+SriovCtrl)
	if err != nil {
		return nil, err
	}
	if ctl&SriovCtrlVFE != 0 {
		return nil, fmt.Errorf("%s: VF Enable is already set", FormatBDF(pf))
	}
	plat, err := c.GetPlatform(ctx)
	if err != nil {
		return nil, err
	}
	var portRid uint32
	var portFound, ariSupported bool
	var subordinate uint32
	for _, p := range plat.RootPorts {
		if p.SecondaryBus == uint32(pf>>8) {
			portRid, portFound, ariSupported, subordinate = p.Rid, true, p.AriForwardingSupported, p.SubordinateBus
			break
		}
	}
	ari := 0
	if portFound && ariSupported {
		if ari, err = c.FindExtendedCapability(ctx, pf, ExtCapIDARI); err != nil {
			return nil, err
		}
		if ari != 0 {
			if err := c.setARI(ctx, portRid, pf&0xff00, opt.ARI != ARIOff); err != nil {
				return nil, err
			}
		}
	}
	if ari == 0 && opt.ARI == ARIOn {
		return nil, fmt.Errorf("%s: ARI requested but the hierarchy does not support it (port ARI Forwarding and a PF ARI capability needed)", FormatBDF(pf))
	}
	if _, err := c.WriteConfig16(ctx, pf, sriov+SriovNumVFs, uint16(numVFs)); err != nil {
		return nil, err
	}
	offset, err := c.ReadConfig16(ctx, pf, sriov+SriovVFOffset)
	if err != nil {
		return nil, err
	}
	stride, err := c.ReadConfig16(ctx, pf, sriov+SriovVFStride)
	if err != nil {
		return nil, err
	}
	rids := make([]uint32, numVFs)
	for i := range rids {
		rids[i] = pf + uint32(offset) + uint32(i)*uint32(stride)
		if portFound && uint32(rids[i]>>8) > subordinate {
			_, _ = c.WriteConfig16(ctx, pf, sriov+SriovNumVFs, 0)
			return nil, fmt.Errorf("VF %s would be beyond the port's subordinate bus %02x", FormatBDF(rids[i]), subordinate)
		}
	}
	ctl, err = c.ReadConfig16(ctx, pf, sriov+SriovCtrl)
	if err != nil {
		return nil, err
	}
	// VF Enable and VF MSE in one write.
	if _, err := c.WriteConfig16(ctx, pf, sriov+SriovCtrl, ctl|SriovCtrlVFE|SriovCtrlMSE); err != nil {
		return nil, err
	}
	return rids, sleepCtx(ctx, settle(opt.Settle))
}

// setARI sets or clears ARI Forwarding Enable in the port's Device Control 2 and ARI Capable
// Hierarchy in function 0's SR-IOV Control (only while its VF Enable is clear).
func (c *Client) setARI(ctx context.Context, port, fn0 uint32, on bool) error {
	pcie, err := c.FindCapability(ctx, port, CapIDPCIe)
	if err != nil {
		return err
	}
	if pcie != 0 {
		v, err := c.ReadConfig16(ctx, port, pcie+PCIeDevCtl2)
		if err != nil {
			return err
		}
		want := v &^ AriForwarding
		if on {
			want |= AriForwarding
		}
		if want != v {
			if _, err := c.WriteConfig16(ctx, port, pcie+PCIeDevCtl2, want); err != nil {
				return err
			}
		}
	}
	s0, err := c.FindExtendedCapability(ctx, fn0, ExtCapIDSRIOV)
	if err != nil || s0 == 0 {
		return err
	}
	c0, err := c.ReadConfig16(ctx, fn0, s0+SriovCtrl)
	if err != nil || c0&SriovCtrlVFE != 0 {
		return err
	}
	want := c0 &^ SriovCtrlARI
	if on {
		want |= SriovCtrlARI
	}
	if want != c0 {
		_, err = c.WriteConfig16(ctx, fn0, s0+SriovCtrl, want)
	}
	return err
}

// DisableSRIOV disables SR-IOV as Linux does: clears VF Enable and VF MSE in one write, waits
// (settle, default 100 ms), then sets NumVFs to 0.
func (c *Client) DisableSRIOV(ctx context.Context, pf uint32, settleFor time.Duration) error {
	sriov, err := c.FindExtendedCapability(ctx, pf, ExtCapIDSRIOV)
	if err != nil {
		return err
	}
	if sriov == 0 {
		return fmt.Errorf("%s has no SR-IOV capability", FormatBDF(pf))
	}
	ctl, err := c.ReadConfig16(ctx, pf, sriov+SriovCtrl)
	if err != nil {
		return err
	}
	if _, err := c.WriteConfig16(ctx, pf, sriov+SriovCtrl, ctl&^(SriovCtrlVFE|SriovCtrlMSE)); err != nil {
		return err
	}
	if err := sleepCtx(ctx, settle(settleFor)); err != nil {
		return err
	}
	_, err = c.WriteConfig16(ctx, pf, sriov+SriovNumVFs, 0)
	return err
}
