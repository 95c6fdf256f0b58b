/* The C side of `make bench-peer` (tests/bench-peer/run.sh): the socket floor and a minimal
 * vfio-user client of our own (VERSION, then REGION_READ / REGION_WRITE of config space), so the
 * peer (libvfio-user's sample server) and PcieEmu's vfio-user endpoint are timed by the same code.
 *
 *   peer floor N                 16-byte ping-pong over a Unix socketpair with a forked echo child
 *   peer read SOCKET N           REGION_READ of 4 bytes of config (offset 0), one at a time
 *   peer write SOCKET N OFFSET   REGION_WRITE of 4 bytes of config with the no-reply flag (posted),
 *                                then one REGION_READ as a fence; ops/s over the whole run
 *
 * Prints one line: RESULT <p50 us> <p99 us> <ops/s> <client CPU us/op> [<server CPU us/op>]
 * (the floor's echo child reports its own CPU; for a socket the caller measures the server). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { HDR = 16, CMD_VERSION = 1, CMD_REGION_READ = 9, CMD_REGION_WRITE = 10, F_NO_REPLY = 0x10, F_ERROR = 0x20,
       REGION_CONFIG = 7 };

static void die(const char* what) {
  fprintf(stderr, "peer: %s: %s\n", what, errno ? strerror(errno) : "protocol error");
  exit(1);
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double cpu_us(int who) {
  struct rusage r;
  getrusage(who, &r);
  return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static void report(double* lat, int n, double seconds, double client_cpu, double server_cpu) {
  qsort(lat, n, sizeof *lat, cmp);
  printf("RESULT %.2f %.2f %.0f %.2f", lat[n / 2], lat[(int)(n * 0.99)], n / seconds, client_cpu / n);
  if (server_cpu >= 0) printf(" %.2f", server_cpu / n);
  printf("\n");
}

static void put16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t* p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void send_all(int fd, const void* buf, size_t len) {
  const uint8_t* p = buf;
  while (len > 0) {
    ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) die("send");
    p += k;
    len -= (size_t)k;
  }
}

static void recv_all(int fd, void* buf, size_t len) {
  uint8_t* p = buf;
  while (len > 0) {
    ssize_t k = recv(fd, p, len, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) die("recv");
    p += k;
    len -= (size_t)k;
  }
}

/* Reads one reply (header + payload) into buf; returns the payload size. */
static uint32_t recv_reply(int fd, uint8_t* buf, size_t cap) {
  recv_all(fd, buf, HDR);
  uint32_t size = get32(buf + 4);
  if (size < HDR || size > cap) { errno = 0; die("reply size"); }
  recv_all(fd, buf + HDR, size - HDR);
  if (get32(buf + 8) & F_ERROR) { errno = (int)get32(buf + 12); die("error reply"); }
  return size - HDR;
}

static int connect_vfio_user(const char* path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (fd < 0 || strlen(path) >= sizeof a.sun_path) die("socket");
  strcpy(a.sun_path, path);
  for (int tries = 0; connect(fd, (struct sockaddr*)&a, sizeof a) != 0; tries++) {
    if (tries > 200) die("connect");
    usleep(50000);
  }
  const char* caps = "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576}}";
  uint8_t msg[256] = {0};
  uint32_t size = HDR + 4 + (uint32_t)strlen(caps) + 1;
  put16(msg, 0);
  put16(msg + 2, CMD_VERSION);
  put32(msg + 4, size);
  memcpy(msg + HDR + 4, caps, strlen(caps) + 1); /* major 0, minor 0 */
  send_all(fd, msg, size);
  uint8_t reply[4096];
  recv_reply(fd, reply, sizeof reply);
  return fd;
}

static void region_msg(uint8_t* m, uint16_t id, uint16_t cmd, uint32_t flags, uint64_t offset, uint32_t count) {
  put16(m, id);
  put16(m + 2, cmd);
  put32(m + 4, HDR + 16 + (cmd == CMD_REGION_WRITE ? count : 0));
  put32(m + 8, flags);
  put32(m + 12, 0);
  put64(m + 16, offset);
  put32(m + 24, REGION_CONFIG);
  put32(m + 28, count);
}

static void region_read(int fd, uint16_t id, uint8_t* buf) {
  uint8_t m[32];
  region_msg(m, id, CMD_REGION_READ, 0, 0, 4);
  send_all(fd, m, sizeof m);
  if (recv_reply(fd, buf, 4096) != 16 + 4) { errno = 0; die("REGION_READ reply"); }
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: peer floor N | peer read SOCKET N | peer write SOCKET N OFFSET\n");
    return 2;
  }
  int n = atoi(argv[argc > 3 ? 3 : 2]);
  if (strcmp(argv[1], "floor") == 0) {
    n = atoi(argv[2]);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
    pid_t child = fork();
    if (child == 0) {
      close(sv[0]);
      uint8_t b[16];
      for (;;) {
        ssize_t k = recv(sv[1], b, sizeof b, MSG_WAITALL);
        if (k != (ssize_t)sizeof b) _exit(0);
        send_all(sv[1], b, sizeof b);
      }
    }
    close(sv[1]);
    uint8_t b[16] = {1};
    for (int i = 0; i < n / 10 + 1; i++) { send_all(sv[0], b, 16); recv_all(sv[0], b, 16); }
    double* lat = calloc((size_t)n, sizeof *lat);
    double c0 = cpu_us(RUSAGE_SELF), t0 = now_us();
    for (int i = 0; i < n; i++) {
      double s = now_us();
      send_all(sv[0], b, 16);
      recv_all(sv[0], b, 16);
      lat[i] = now_us() - s;
    }
    double secs = (now_us() - t0) / 1e6, cpu = cpu_us(RUSAGE_SELF) - c0;
    close(sv[0]);
    waitpid(child, NULL, 0);
    /* The child's CPU includes its warm-up share: scale by the measured fraction. */
    double child_cpu = cpu_us(RUSAGE_CHILDREN) * n / (n + n / 10 + 1);
    report(lat, n, secs, cpu, child_cpu);
    return 0;
  }
  if (argc < 4) { fprintf(stderr, "peer %s: SOCKET N missing\n", argv[1]); return 2; }
  int fd = connect_vfio_user(argv[2]);
  uint8_t buf[4096];
  double* lat = calloc((size_t)n + 1, sizeof *lat);
  for (int i = 0; i < n / 10 + 1; i++) region_read(fd, (uint16_t)i, buf);
  if (strcmp(argv[1], "read") == 0) {
    double c0 = cpu_us(RUSAGE_SELF), t0 = now_us();
    for (int i = 0; i < n; i++) {
      double s = now_us();
      region_read(fd, (uint16_t)i, buf);
      lat[i] = now_us() - s;
    }
    report(lat, n, (now_us() - t0) / 1e6, cpu_us(RUSAGE_SELF) - c0, -1);
  } else if (strcmp(argv[1], "write") == 0 && argc > 4) {
    uint64_t offset = strtoull(argv[4], NULL, 0);
    uint8_t m[HDR + 16 + 4];
    double c0 = cpu_us(RUSAGE_SELF), t0 = now_us();
    for (int i = 0; i < n; i++) {
      double s = now_us();
      region_msg(m, (uint16_t)i, CMD_REGION_WRITE, F_NO_REPLY, offset, 4);
      put32(m + HDR + 16, (uint32_t)i & 0xFF);
      send_all(fd, m, sizeof m);
      lat[i] = now_us() - s; /* the cost of posting one */
    }
    region_read(fd, 0xFFFF, buf); /* fence: every write before it has executed */
    report(lat, n, (now_us() - t0) / 1e6, cpu_us(RUSAGE_SELF) - c0, -1);
  } else {
    fprintf(stderr, "peer: unknown mode %s\n", argv[1]);
    return 2;
  }
  close(fd);
  return 0;
}
