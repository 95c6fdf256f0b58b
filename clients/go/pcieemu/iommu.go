package pcieemu

import (
	"context"

	pb "github.com/pcieemu/pcieemu/clients/go/gen/pcieemuv1"
)

// TranslateOptions are the optional settings of TranslateAddress.
type TranslateOptions struct {
	// Write asks for a write translation (checks the write permission); false: a read.
	Write bool
	// DryRun translates without filling the context cache or IOTLB and without recording a fault.
	DryRun bool
}

// TranslateAddress asks the remapping unit (VT-d) how a DMA from rid to address would translate:
// Status (OK, FAULT, TRANSLATION_DISABLED, PASS_THROUGH), TranslatedAddress, FaultReason (the
// VT-d fault reason code) and FaultRecorded.
func (c *Client) TranslateAddress(ctx context.Context, rid uint32, address uint64, o TranslateOptions) (*pb.TranslateAddressResponse, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	return c.Iommu.TranslateAddress(ctx, &pb.TranslateAddressRequest{Rid: rid, Address: address, Write: o.Write, DryRun: o.DryRun})
}
