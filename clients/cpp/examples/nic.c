/* The example driver's NIC step in plain C: a frame from VF0 to VF1 through the 82576's VMDq
 * loopback, and one from VF0 to the wire. */
#include "nic.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pcieemu/igb82576.h"

#define RING_ENTRIES 8 /* 8 x 16 = 128 bytes, the required TDLEN/RDLEN multiple */
#define TX_RING 0x100000u
#define RX_RING 0x101000u
#define TX_BUF 0x102000u
#define RX_BUF 0x103000u
#define BUF_SIZE 2048u
#define PCI_COMMAND 0x04

static int fail(const char* what) {
  fprintf(stderr, "%s: %s\n", what, pcieemu_last_error());
  return 1;
}

static void put32(uint8_t* p, uint32_t v) {
  int i;
  for (i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t* p, uint64_t v) {
  put32(p, (uint32_t)v);
  put32(p + 4, (uint32_t)(v >> 32));
}
static uint32_t get32(const uint8_t* p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The locally administered MAC the driver gives VF i. */
static void vf_mac(int i, uint8_t mac[6]) {
  static const uint8_t prefix[5] = {0x02, 0x00, 0x00, 0x00, 0x10};
  memcpy(mac, prefix, 5);
  mac[5] = (uint8_t)i;
}

/* A 64-byte IPv4-typed frame with a counting payload. */
static void test_frame(uint8_t f[64], const uint8_t dst[6], const uint8_t src[6], uint8_t fill) {
  int i;
  memcpy(f, dst, 6);
  memcpy(f + 6, src, 6);
  f[12] = 0x08;
  f[13] = 0x00;
  for (i = 14; i < 64; i++) f[i] = (uint8_t)(fill + i);
}

static int reg_write(pcieemu_t* emu, uint64_t addr, uint32_t v) {
  int st = pcieemu_mmio_write(emu, addr, 4, v);
  if (st == PCIEEMU_STATUS_SUCCESSFUL) return 0;
  if (st >= 0) fprintf(stderr, "MMIO write 0x%llx: %s\n", (unsigned long long)addr, pcieemu_status_name(st));
  else fail("MMIO write");
  return -1;
}

static uint64_t bar0(pcieemu_t* emu, uint32_t rid) {
  pcieemu_function_t fns[64];
  int n = pcieemu_list_functions(emu, fns, 64), i;
  for (i = 0; i < n && i < 64; i++)
    if (fns[i].rid == rid) return fns[i].bar[0];
  return 0;
}

/* Polls dword dw of the descriptor at addr until DD is set (about 1 s); 0 when set. */
static int wait_dd(pcieemu_t* emu, uint64_t addr, int dw, uint8_t desc[IGB_DESCRIPTOR_BYTES]) {
  struct timespec ms2 = {0, 2000000};
  int t;
  for (t = 0; t < 500; t++) {
    if (pcieemu_mem_read(emu, addr, desc, IGB_DESCRIPTOR_BYTES) < 0) return fail("RAM read");
    if (get32(desc + 4 * dw) & IGB_DESC_DD) return 0;
    nanosleep(&ms2, NULL);
  }
  fprintf(stderr, "descriptor at 0x%llx: no DD after 1 s\n", (unsigned long long)addr);
  return 1;
}

/* Posts frame in TX descriptor slot (advanced data, EOP|IFCS|RS) and writes TDT = slot + 1. */
static int send_frame(pcieemu_t* emu, uint64_t ram, uint64_t tx, int slot, const uint8_t* frame, uint32_t len) {
  uint8_t d[IGB_DESCRIPTOR_BYTES];
  uint64_t buf = ram + TX_BUF + (uint64_t)slot * BUF_SIZE;
  if (pcieemu_mem_write(emu, buf, frame, len) < 0) return fail("RAM write");
  put64(d, buf);
  put32(d + 8, len | IGB_TXD_DTYP_DATA | IGB_TXD_CMD_EOP | IGB_TXD_CMD_IFCS | IGB_TXD_CMD_RS | IGB_TXD_CMD_DEXT);
  put32(d + 12, len << IGB_TXD_PAYLEN_SHIFT);
  if (pcieemu_mem_write(emu, ram + TX_RING + (uint64_t)slot * IGB_DESCRIPTOR_BYTES, d, sizeof d) < 0) return fail("RAM write");
  return reg_write(emu, tx + IGB_TDT, (uint32_t)slot + 1) < 0;
}

static int setup_and_send(pcieemu_t* emu, uint32_t pf, const uint32_t vfs[2]) {
  uint64_t pf_bar = bar0(emu, pf), vf_bar[2], ram = 0, ram_size = 0, rx, tx;
  uint8_t mac[6], d[IGB_DESCRIPTOR_BYTES], frame[64], got[2048];
  uint32_t cmd, status, length;
  pcieemu_capture_t* cap;
  int i, n;

  for (i = 0; i < 2; i++) {
    vf_bar[i] = bar0(emu, vfs[i]);
    /* Bus Master Enable (the VFs' memory space is VF MSE in the SR-IOV capability). */
    if (pcieemu_cfg_write(emu, vfs[i], PCI_COMMAND, 2, 0x4) < 0) return fail("config write");
  }
  if (!pf_bar || !vf_bar[0] || !vf_bar[1]) {
    fprintf(stderr, "BAR0 of PF0 or a VF is not assigned\n");
    return 1;
  }
  if (pcieemu_cfg_read(emu, pf, PCI_COMMAND, 2, &cmd) < 0 || pcieemu_cfg_write(emu, pf, PCI_COMMAND, 2, cmd | 0x6) < 0)
    return fail("config access");
  pcieemu_ram_map(emu, &ram, &ram_size);
  if (ram_size == 0) return fail("RAM");

  /* PF driver: VMDq with loopback, pools 0 and 1 (the VFs) enabled and accepting untagged
   * frames, RAR1/RAR2 = the VFs' MACs steering to their pools. */
  if (reg_write(emu, pf_bar + IGB_CTRL_EXT, IGB_CTRL_EXT_PFRSTD) || reg_write(emu, pf_bar + IGB_MRQC, IGB_MRQC_VMDQ) ||
      reg_write(emu, pf_bar + IGB_DTXSWC, IGB_DTXSWC_LOOPBACK) ||
      reg_write(emu, pf_bar + IGB_RCTL, IGB_RCTL_EN | IGB_RCTL_BAM | IGB_RCTL_SECRC) ||
      reg_write(emu, pf_bar + IGB_TCTL, IGB_TCTL_EN) ||
      reg_write(emu, pf_bar + IGB_VMOLR(0), IGB_VMOLR_AUPE | IGB_VMOLR_BAM) ||
      reg_write(emu, pf_bar + IGB_VMOLR(1), IGB_VMOLR_AUPE | IGB_VMOLR_BAM) ||
      reg_write(emu, pf_bar + IGB_VFRE, 0x3) || reg_write(emu, pf_bar + IGB_VFTE, 0x3))
    return 1;
  for (i = 0; i < 2; i++) {
    vf_mac(i, mac);
    if (reg_write(emu, pf_bar + IGB_RAL(i + 1), get32(mac)) ||
        reg_write(emu, pf_bar + IGB_RAH(i + 1),
                  (uint32_t)(mac[4] | mac[5] << 8) | (1u << i) << IGB_RAH_POOL_SHIFT | IGB_RAH_AV))
      return 1;
  }

  /* VF1 RX queue 0: advanced one-buffer descriptors, 2 KiB buffers, all but one posted. */
  for (i = 0; i < RING_ENTRIES; i++) {
    memset(d, 0, sizeof d);
    put64(d, ram + RX_BUF + (uint64_t)i * BUF_SIZE);
    if (pcieemu_mem_write(emu, ram + RX_RING + (uint64_t)i * IGB_DESCRIPTOR_BYTES, d, sizeof d) < 0) return fail("RAM write");
  }
  rx = vf_bar[1] + IGB_VF_RX_QUEUE0;
  if (reg_write(emu, rx + IGB_RDBAL, (uint32_t)(ram + RX_RING)) || reg_write(emu, rx + IGB_RDBAH, (uint32_t)((ram + RX_RING) >> 32)) ||
      reg_write(emu, rx + IGB_RDLEN, RING_ENTRIES * IGB_DESCRIPTOR_BYTES) ||
      reg_write(emu, rx + IGB_SRRCTL, IGB_SRRCTL_BSIZE_2K | IGB_SRRCTL_ADV_ONE_BUFFER) ||
      reg_write(emu, rx + IGB_RDH, 0) || reg_write(emu, rx + IGB_RDT, 0) ||
      reg_write(emu, rx + IGB_RXDCTL, IGB_QUEUE_ENABLE) || reg_write(emu, rx + IGB_RDT, RING_ENTRIES - 1))
    return 1;
  /* VF0 TX queue 0. */
  tx = vf_bar[0] + IGB_VF_TX_QUEUE0;
  if (reg_write(emu, tx + IGB_TDBAL, (uint32_t)(ram + TX_RING)) || reg_write(emu, tx + IGB_TDBAH, (uint32_t)((ram + TX_RING) >> 32)) ||
      reg_write(emu, tx + IGB_TDLEN, RING_ENTRIES * IGB_DESCRIPTOR_BYTES) ||
      reg_write(emu, tx + IGB_TDH, 0) || reg_write(emu, tx + IGB_TDT, 0) ||
      reg_write(emu, tx + IGB_TXDCTL, IGB_QUEUE_ENABLE))
    return 1;

  vf_mac(1, mac);
  {
    uint8_t src[6];
    vf_mac(0, src);
    test_frame(frame, mac, src, 0xA5);
  }
  if (send_frame(emu, ram, tx, 0, frame, sizeof frame)) return 1;
  if (wait_dd(emu, ram + TX_RING, 3, d)) return fprintf(stderr, "VF0 TX failed\n"), 1;
  if (wait_dd(emu, ram + RX_RING, 2, d)) return fprintf(stderr, "VF1 RX failed\n"), 1;
  status = get32(d + 8);
  length = get32(d + 12) & 0xFFFF;
  if (length > sizeof got || pcieemu_mem_read(emu, ram + RX_BUF, got, length) < 0) return fail("RAM read");
  if (!(status & IGB_RXD_STAT_EOP) || length != sizeof frame || memcmp(got, frame, length) != 0) {
    fprintf(stderr, "VF1 received %u bytes (status 0x%x), not the 64 sent\n", (unsigned)length, (unsigned)status);
    return 1;
  }
  printf("VF0 -> VF1 loopback: %u-byte frame received intact (RX status 0x%x)\n", (unsigned)length, (unsigned)status);

  /* A frame to an unknown unicast MAC leaves on the wire; the loopback frame above did not. */
  cap = pcieemu_capture_open(emu, 0, 10000);
  if (!cap) return fail("CaptureFrames");
  {
    static const uint8_t unknown[6] = {0x02, 0x00, 0x00, 0x00, 0x20, 0x00};
    uint8_t src[6];
    vf_mac(0, src);
    test_frame(frame, unknown, src, 0x5A);
  }
  if (send_frame(emu, ram, tx, 1, frame, sizeof frame)) {
    pcieemu_capture_close(cap);
    return 1;
  }
  n = pcieemu_capture_next(cap, got, (int)sizeof got);
  pcieemu_capture_close(cap);
  if (n < 0) return fail("no frame on the wire");
  if (n != (int)sizeof frame || memcmp(got, frame, sizeof frame) != 0) {
    fprintf(stderr, "wire frame of %d bytes differs from the one sent\n", n);
    return 1;
  }
  printf("VF0 -> wire: %d-byte frame captured on port 0\n", n);
  return 0;
}

int vf_to_vf(pcieemu_t* emu, uint32_t pf) {
  uint32_t vfs[2];
  int rc;
  if (pcieemu_sriov_enable(emu, pf, 2, 1, vfs) < 0) return fail("enable SR-IOV");
  rc = setup_and_send(emu, pf, vfs);
  if (pcieemu_sriov_disable(emu, pf) < 0) return fail("disable SR-IOV");
  return rc;
}
