package pcieemu

import (
	"context"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

// Capability is an entry of the standard capability list.
type Capability struct {
	ID     uint8
	Offset int
}

// ExtendedCapability is an entry of the extended capability list.
type ExtendedCapability struct {
	ID      uint16
	Version uint8
	Offset  int
}

// Capabilities walks the standard capability list (PCI 3.0 §6.7); it stops on a loop or a
// pointer into the header. A function that does not answer has none.
func (c *Client) Capabilities(ctx context.Context, rid uint32) ([]Capability, error) {
	st, err := c.ReadConfig(ctx, rid, RegStatus, 2)
	if err != nil || st.Status != pb.CompletionStatus_COMPLETION_STATUS_SUCCESSFUL || st.Value&StatusCapList == 0 {
		return nil, err
	}
	p, err := c.ReadConfig8(ctx, rid, RegCapPtr)
	if err != nil {
		return nil, err
	}
	var caps []Capability
	seen := map[int]bool{}
	for ptr := int(p) & 0xfc; ptr >= 0x40 && !seen[ptr] && len(caps) < 48; {
		seen[ptr] = true
		hdr, err := c.ReadConfig16(ctx, rid, ptr)
		if err != nil {
			return nil, err
		}
		caps = append(caps, Capability{ID: uint8(hdr), Offset: ptr})
		ptr = int(hdr>>8) & 0xfc
	}
	return caps, nil
}

// ExtendedCapabilities walks the extended capability list from 0x100 (PCIe Base §7.6); a header
// of 0 or all ones means there is none.
func (c *Client) ExtendedCapabilities(ctx context.Context, rid uint32) ([]ExtendedCapability, error) {
	var caps []ExtendedCapability
	seen := map[int]bool{}
	for off := ExtCapStart; off >= ExtCapStart && off < 0x1000 && !seen[off]; {
		seen[off] = true
		r, err := c.ReadConfig(ctx, rid, off, 4)
		if err != nil {
			return nil, err
		}
		if r.Status != pb.CompletionStatus_COMPLETION_STATUS_SUCCESSFUL || r.Value == 0 || r.Value == 0xffffffff {
			break
		}
		caps = append(caps, ExtendedCapability{ID: uint16(r.Value), Version: uint8(r.Value>>16) & 0xf, Offset: off})
		off = int(r.Value>>20) & 0xffc
	}
	return caps, nil
}

// FindCapability returns the offset of capability id, or 0.
func (c *Client) FindCapability(ctx context.Context, rid uint32, id uint8) (int, error) {
	caps, err := c.Capabilities(ctx, rid)
	for _, x := range caps {
		if x.ID == id {
			return x.Offset, nil
		}
	}
	return 0, err
}

// FindExtendedCapability returns the offset of extended capability id, or 0.
func (c *Client) FindExtendedCapability(ctx context.Context, rid uint32, id uint16) (int, error) {
	caps, err := c.ExtendedCapabilities(ctx, rid)
	for _, x := range caps {
		if x.ID == id {
			return x.Offset, nil
		}
	}
	return 0, err
}
