/* Intel 82576 (igb) register offsets and bits the example driver needs, as in the 82576
 * datasheet and docs/nic.md. Hardware facts only; offsets are from the function's BAR0. */
#ifndef PCIEEMU_IGB82576_H
#define PCIEEMU_IGB82576_H

#define IGB_CTRL_EXT 0x0018
#define IGB_RCTL 0x0100
#define IGB_TCTL 0x0400
#define IGB_DTXSWC 0x3500 /* VMDq TX switch control */
#define IGB_VFRE 0x0C8C   /* pool receive enable, bit n = pool n */
#define IGB_VFTE 0x0C90   /* pool transmit enable */
#define IGB_RAL(n) (0x5400u + 8u * (n)) /* n < 16 */
#define IGB_RAH(n) (IGB_RAL(n) + 4u)
#define IGB_MRQC 0x5818
#define IGB_VMOLR(n) (0x5AD0u + 4u * (n))

#define IGB_CTRL_EXT_PFRSTD (1u << 14) /* PF reset done */
#define IGB_RCTL_EN (1u << 1)
#define IGB_RCTL_BAM (1u << 15)   /* accept broadcast */
#define IGB_RCTL_SECRC (1u << 26) /* strip the Ethernet CRC */
#define IGB_TCTL_EN (1u << 1)
#define IGB_DTXSWC_LOOPBACK (1u << 31) /* VMDq loopback enable */
#define IGB_MRQC_VMDQ 3u               /* MRQC[2:0]: VMDq without RSS */
#define IGB_VMOLR_AUPE (1u << 24)      /* accept untagged packets */
#define IGB_VMOLR_BAM (1u << 27)       /* accept broadcast */
#define IGB_RAH_AV (1u << 31)          /* address valid */
#define IGB_RAH_POOL_SHIFT 18          /* RAH[25:18]: pool select bits */

/* Queue 0 of a VF in the VF's BAR0. */
#define IGB_VF_RX_QUEUE0 0x2800u
#define IGB_VF_TX_QUEUE0 0x3800u
/* Offsets inside an RX queue block. */
#define IGB_RDBAL 0x00
#define IGB_RDBAH 0x04
#define IGB_RDLEN 0x08
#define IGB_SRRCTL 0x0C
#define IGB_RDH 0x10
#define IGB_RDT 0x18
#define IGB_RXDCTL 0x28
/* Offsets inside a TX queue block. */
#define IGB_TDBAL 0x00
#define IGB_TDBAH 0x04
#define IGB_TDLEN 0x08
#define IGB_TDH 0x10
#define IGB_TDT 0x18
#define IGB_TXDCTL 0x28

#define IGB_QUEUE_ENABLE (1u << 25)         /* RXDCTL/TXDCTL.ENABLE */
#define IGB_SRRCTL_BSIZE_2K 2u              /* SRRCTL.BSIZEPACKET in KiB */
#define IGB_SRRCTL_ADV_ONE_BUFFER (1u << 25) /* SRRCTL.DESCTYPE = advanced one-buffer */

/* Advanced TX data descriptor dword 2 (cmd_type_len) and dword 3 (olinfo_status). */
#define IGB_TXD_DTYP_DATA (3u << 20)
#define IGB_TXD_CMD_EOP (1u << 24)
#define IGB_TXD_CMD_IFCS (1u << 25)
#define IGB_TXD_CMD_RS (1u << 27)
#define IGB_TXD_CMD_DEXT (1u << 29)
#define IGB_TXD_PAYLEN_SHIFT 14
/* DD: TX write-back dword 3 bit 0; advanced RX write-back dword 2 bit 0 (EOP bit 1). */
#define IGB_DESC_DD (1u << 0)
#define IGB_RXD_STAT_EOP (1u << 1)
#define IGB_DESCRIPTOR_BYTES 16

#endif /* PCIEEMU_IGB82576_H */
