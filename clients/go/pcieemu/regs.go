package pcieemu

// PCI / PCIe register layout used by the helpers (PCIe Base 4.0 §7.5, SR-IOV §9.3.3). These are
// hardware facts; every wire constant comes from the generated code in gen/pcieemuv1.
const (
	RegVendorID      = 0x00
	RegDeviceID      = 0x02
	RegCommand       = 0x04
	RegStatus        = 0x06
	StatusCapList    = 1 << 4
	RegClassRevision = 0x08
	RegCapPtr        = 0x34
	ExtCapStart      = 0x100

	CapIDPM   = 0x01
	CapIDMSI  = 0x05
	CapIDPCIe = 0x10
	CapIDMSIX = 0x11

	ExtCapIDAER   = 0x0001
	ExtCapIDDSN   = 0x0003
	ExtCapIDARI   = 0x000e
	ExtCapIDSRIOV = 0x0010

	// PCIe capability: Device Capabilities 2 / Device Control 2; bit 5 is ARI Forwarding
	// Supported / ARI Forwarding Enable.
	PCIeDevCap2   = 0x24
	PCIeDevCtl2   = 0x28
	AriForwarding = 1 << 5

	SriovCtrl       = 0x08
	SriovStatus     = 0x0a
	SriovInitialVFs = 0x0c
	SriovTotalVFs   = 0x0e
	SriovNumVFs     = 0x10
	SriovVFOffset   = 0x14
	SriovVFStride   = 0x16
	SriovVFDeviceID = 0x1a

	SriovCtrlVFE = 1 << 0 // VF Enable
	SriovCtrlMSE = 1 << 3 // VF Memory Space Enable
	SriovCtrlARI = 1 << 4 // ARI Capable Hierarchy
)
