package pcieemu

// Intel 82576 (igb) register offsets and bits the example driver needs, as in the 82576
// datasheet and docs/nic.md. Hardware facts only; offsets are from the function's BAR0.
const (
	IgbCtrlExt = 0x0018 // CTRL_EXT
	IgbRctl    = 0x0100 // RCTL
	IgbTctl    = 0x0400 // TCTL
	IgbDtxswc  = 0x3500 // DTXSWC: VMDq TX switch control
	IgbVfre    = 0x0C8C // VFRE: pool receive enable, bit n = pool n
	IgbVfte    = 0x0C90 // VFTE: pool transmit enable
	IgbRal0    = 0x5400 // RAL[n] = 0x5400 + 8n, RAH[n] = RAL[n] + 4 (n < 16)
	IgbMrqc    = 0x5818 // MRQC
	IgbVmolr0  = 0x5AD0 // VMOLR[n] = 0x5AD0 + 4n

	IgbCtrlExtPfrstd  = 1 << 14 // PF reset done
	IgbRctlEn         = 1 << 1
	IgbRctlBam        = 1 << 15 // accept broadcast
	IgbRctlSecrc      = 1 << 26 // strip the Ethernet CRC
	IgbTctlEn         = 1 << 1
	IgbDtxswcLoopback = 1 << 31 // VMDq loopback enable
	IgbMrqcVmdq       = 3       // MRQC[2:0]: VMDq without RSS
	IgbVmolrAupe      = 1 << 24 // accept untagged packets
	IgbVmolrBam       = 1 << 27 // accept broadcast
	IgbRahAv          = 1 << 31 // address valid
	IgbRahPoolShift   = 18      // RAH[25:18]: pool select bits

	// Queue 0 of a VF in the VF's BAR0 (legacy layout: RX 0x2800, TX 0x3800).
	IgbVfRxQueue0 = 0x2800
	IgbVfTxQueue0 = 0x3800
	// Register offsets inside an RX queue block.
	IgbRdbal  = 0x00
	IgbRdbah  = 0x04
	IgbRdlen  = 0x08
	IgbSrrctl = 0x0C
	IgbRdh    = 0x10
	IgbRdt    = 0x18
	IgbRxdctl = 0x28
	// Register offsets inside a TX queue block.
	IgbTdbal  = 0x00
	IgbTdbah  = 0x04
	IgbTdlen  = 0x08
	IgbTdh    = 0x10
	IgbTdt    = 0x18
	IgbTxdctl = 0x28

	IgbQueueEnable        = 1 << 25 // RXDCTL/TXDCTL.ENABLE
	IgbSrrctlBsize2K      = 2       // SRRCTL.BSIZEPACKET in KiB
	IgbSrrctlAdvOneBuffer = 1 << 25 // SRRCTL.DESCTYPE = advanced one-buffer

	// Advanced TX data descriptor, dword 2 (cmd_type_len) and dword 3 (olinfo_status).
	IgbTxdDtypData     = 3 << 20
	IgbTxdCmdEop       = 1 << 24
	IgbTxdCmdIfcs      = 1 << 25
	IgbTxdCmdRs        = 1 << 27
	IgbTxdCmdDext      = 1 << 29
	IgbTxdPaylenShift  = 14
	IgbTxdStaDD        = 1 << 0 // write-back: dword 3 bit 0
	IgbRxdStatDD       = 1 << 0 // advanced RX write-back: dword 2 bit 0
	IgbRxdStatEop      = 1 << 1
	IgbDescriptorBytes = 16
)
