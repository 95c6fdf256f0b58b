/* Example driver in plain C: enumerate, enable 2 VFs on PF0 (01:00.0), read a VF's config
 * without ARI (02:10.0) and with ARI (01:10.0), disable; then (nic.c) send a frame from VF0 to
 * VF1 through the NIC's VMDq loopback and one to the wire.
 * Usage: driver [tcp://127.0.0.1:50551 | unix:///path] [token-file]
 * On TCP the token comes from token-file, else $PCIEEMU_TOKEN, else the server's default token file. */
#include <stdio.h>

#include "nic.h"
#include "pcieemu/pcieemu.h"

#define CLASS_REVISION 0x08

static int fail(const char* what) {
  fprintf(stderr, "%s: %s\n", what, pcieemu_last_error());
  return 1;
}

int main(int argc, char** argv) {
  pcieemu_function_t fns[64];
  uint32_t pf0, vf, vfs[2];
  char a[8], b[8];
  uint32_t value;
  int n, i, ari, st;
  pcieemu_t* emu = pcieemu_connect_token_file(argc > 1 ? argv[1] : NULL, argc > 2 ? argv[2] : NULL);
  if (!emu) return fail("connect");

  n = pcieemu_list_functions(emu, fns, 64);
  if (n < 0) return fail("list functions");
  for (i = 0; i < n && i < 64; i++)
    printf("%s %04x:%04x class %06x %s\n", fns[i].bdf, fns[i].vendor_id, fns[i].device_id,
           (unsigned)fns[i].class_code, fns[i].name);

  if (pcieemu_parse_bdf("01:00.0", &pf0) < 0) return fail("parse");
  for (ari = 0; ari <= 1; ari++) {
    if (pcieemu_sriov_enable(emu, pf0, 2, ari, vfs) < 0) return fail("enable SR-IOV");
    pcieemu_format_bdf(vfs[0], a);
    pcieemu_format_bdf(vfs[1], b);
    printf("ARI %s: VFs at %s, %s\n", ari ? "on " : "off", a, b);
    if (pcieemu_parse_bdf(ari ? "01:10.0" : "02:10.0", &vf) < 0) return fail("parse");
    st = pcieemu_cfg_read(emu, vf, CLASS_REVISION, 4, &value);
    if (st < 0) return fail("config read");
    pcieemu_format_bdf(vf, a);
    printf("  %s class/rev = 0x%08x (%s)\n", a, (unsigned)value, pcieemu_status_name(st));
    if (pcieemu_sriov_disable(emu, pf0) < 0) return fail("disable SR-IOV");
  }
  if (vf_to_vf(emu, pf0)) return 1;
  pcieemu_close(emu);
  return 0;
}
