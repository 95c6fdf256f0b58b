/** Intel 82576 (igb) register offsets and bits the example driver needs, as in the 82576
 *  datasheet and docs/nic.md. Hardware facts only; offsets are from the function's BAR0. */
export const Igb = {
  CTRL_EXT: 0x0018,
  RCTL: 0x0100,
  TCTL: 0x0400,
  /** VMDq TX switch control. */
  DTXSWC: 0x3500,
  /** Pool receive / transmit enable, bit n = pool n. */
  VFRE: 0x0c8c,
  VFTE: 0x0c90,
  /** RAL[n] = 0x5400 + 8n, RAH[n] = RAL[n] + 4 (n < 16). */
  RAL0: 0x5400,
  MRQC: 0x5818,
  /** VMOLR[n] = 0x5AD0 + 4n. */
  VMOLR0: 0x5ad0,

  CTRL_EXT_PFRSTD: 1 << 14,
  RCTL_EN: 1 << 1,
  RCTL_BAM: 1 << 15,
  RCTL_SECRC: 1 << 26,
  TCTL_EN: 1 << 1,
  DTXSWC_LOOPBACK: 0x8000_0000,
  /** MRQC[2:0]: VMDq without RSS. */
  MRQC_VMDQ: 3,
  VMOLR_AUPE: 1 << 24,
  VMOLR_BAM: 1 << 27,
  RAH_AV: 0x8000_0000,
  /** RAH[25:18]: pool select bits. */
  RAH_POOL_SHIFT: 18,

  /** Queue 0 of a VF in the VF's BAR0. */
  VF_RX_QUEUE0: 0x2800,
  VF_TX_QUEUE0: 0x3800,
  /** Offsets inside an RX queue block. */
  RDBAL: 0x00, RDBAH: 0x04, RDLEN: 0x08, SRRCTL: 0x0c, RDH: 0x10, RDT: 0x18, RXDCTL: 0x28,
  /** Offsets inside a TX queue block. */
  TDBAL: 0x00, TDBAH: 0x04, TDLEN: 0x08, TDH: 0x10, TDT: 0x18, TXDCTL: 0x28,
  /** RXDCTL/TXDCTL.ENABLE. */
  QUEUE_ENABLE: 1 << 25,
  /** SRRCTL.BSIZEPACKET in KiB. */
  SRRCTL_BSIZE_2K: 2,
  /** SRRCTL.DESCTYPE = advanced one-buffer. */
  SRRCTL_ADV_ONE_BUFFER: 1 << 25,

  /** Advanced TX data descriptor dword 2 (cmd_type_len) and dword 3 (olinfo_status). */
  TXD_DTYP_DATA: 3 << 20,
  TXD_CMD_EOP: 1 << 24,
  TXD_CMD_IFCS: 1 << 25,
  TXD_CMD_RS: 1 << 27,
  TXD_CMD_DEXT: 1 << 29,
  TXD_PAYLEN_SHIFT: 14,
  /** DD: TX write-back dword 3 bit 0; advanced RX write-back dword 2 bit 0 (EOP bit 1). */
  DESC_DD: 1 << 0,
  RXD_STAT_EOP: 1 << 1,
  DESCRIPTOR_BYTES: 16,
} as const;
