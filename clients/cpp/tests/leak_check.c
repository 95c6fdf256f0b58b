/* Failing pcieemu_connect calls must leak nothing. Linked with LeakSanitizer (-fsanitize=leak):
 * at exit it reports every unreachable allocation and makes the exit status non-zero.
 * Usage: leak_check [--leak]   (--leak also drops one allocation: proves the checker sees leaks;
 * it skips the last case, which waits out the 10 s connect timeout)
 * Prints "N failed connects, no handle" and exits 0 when every connect failed as expected. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pcieemu/pcieemu.h"

int main(int argc, char** argv) {
  static const struct { const char* target; const char* token_file; } cases[] = {
      {"tcp://127.0.0.1:9", "/nonexistent/pcieemu-leak-check/token"}, /* unreadable token file */
      {"unix:relative/path.sock", NULL},                              /* malformed target */
      {"ftp://nowhere", NULL},                                        /* unknown scheme */
      {"unix:///nonexistent/pcieemu-leak-check.sock", NULL},          /* nothing listens: times out */
  };
  int leak = argc > 1 && strcmp(argv[1], "--leak") == 0;
  int n = (int)(sizeof cases / sizeof cases[0]) - leak, failed = 0;
  for (int i = 0; i < n; i++) {
    pcieemu_t* emu = pcieemu_connect_token_file(cases[i].target, cases[i].token_file);
    if (emu) {
      fprintf(stderr, "%s: connected, expected a failure\n", cases[i].target);
      pcieemu_close(emu);
      return 2;
    }
    if (strlen(pcieemu_last_error()) == 0) {
      fprintf(stderr, "%s: no error message\n", cases[i].target);
      return 2;
    }
    fprintf(stderr, "%s: %s\n", cases[i].target, pcieemu_last_error());
    failed++;
  }
  if (leak) {
    void* volatile p = malloc(4242);
    p = NULL;
    (void)p;
  }
  printf("%d failed connects, no handle\n", failed);
  return 0;
}
