/* PcieEmu C API: a plain C face of the C++ client for driver authors who write C.
 * Functions return a negative value on an error (a malformed request, a lost connection); the
 * message is in pcieemu_last_error() (per thread). Completion statuses are the protocol's
 * CompletionStatus numbers, exported below from the generated code. */
#ifndef PCIEEMU_H
#define PCIEEMU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pcieemu_handle pcieemu_t;

/* pcieemu.v1.CompletionStatus values (taken from the generated code at build time). */
extern const int PCIEEMU_STATUS_SUCCESSFUL;
extern const int PCIEEMU_STATUS_UNSUPPORTED_REQUEST;
extern const int PCIEEMU_STATUS_COMPLETER_ABORT;
extern const int PCIEEMU_STATUS_CONFIGURATION_RETRY;

typedef struct {
  uint32_t rid;
  uint16_t vendor_id;
  uint16_t device_id;
  uint32_t class_code;
  int is_virtual;
  uint32_t physical_function_rid;
  char bdf[16];
  char name[32];
  /* Address programmed in BAR 0-5 and the expansion ROM (6); 0 if not implemented or unassigned.
   * A VF's entries are its slice of the PF's VF BAR apertures. */
  uint64_t bar[7];
} pcieemu_function_t;

/* "tcp://127.0.0.1:50551", "unix:///path" or NULL ($PCIEEMU_TARGET or the default). NULL on failure.
 * On TCP every call carries the server's token: $PCIEEMU_TOKEN, else the default token file
 * (token in the runtime directory beside the default socket). A Unix socket needs none. */
pcieemu_t* pcieemu_connect(const char* target);
/* pcieemu_connect with the TCP token read from token_file (NULL: as pcieemu_connect). NULL on
 * failure, e.g. an unreadable token file. */
pcieemu_t* pcieemu_connect_token_file(const char* target, const char* token_file);
void pcieemu_close(pcieemu_t* emu);
const char* pcieemu_last_error(void);
const char* pcieemu_status_name(int status);

int pcieemu_reset(pcieemu_t* emu);
/* Fills up to max entries; returns how many functions answer now, or -1. */
int pcieemu_list_functions(pcieemu_t* emu, pcieemu_function_t* out, int max);

/* Config access by width (1, 2, 4). Returns the completion status, or -1. */
int pcieemu_cfg_read(pcieemu_t* emu, uint32_t rid, int offset, int width, uint32_t* value);
int pcieemu_cfg_write(pcieemu_t* emu, uint32_t rid, int offset, int width, uint32_t value);
/* Memory-space access (1, 2, 4, 8 naturally aligned). Returns the completion status, or -1. */
int pcieemu_mmio_read(pcieemu_t* emu, uint64_t address, int width, uint64_t* value);
int pcieemu_mmio_write(pcieemu_t* emu, uint64_t address, int width, uint64_t value);

/* Host RAM by physical address: the shared RAM file mapped into this process when the server is
 * local, else the Read/WriteMemory RPCs (opened on first use). Return 0, or -1. */
int pcieemu_mem_read(pcieemu_t* emu, uint64_t address, void* dst, size_t length);
int pcieemu_mem_write(pcieemu_t* emu, uint64_t address, const void* src, size_t length);
/* The RAM's physical base and size; returns the mapping (index = address - base), or NULL when
 * the RAM is reached through RPC (or on an error: see pcieemu_last_error()). */
uint8_t* pcieemu_ram_map(pcieemu_t* emu, uint64_t* base, uint64_t* size);

/* Frames a NIC port sends onto the wire from now on (EthernetService.CaptureFrames). open waits
 * until the server has subscribed; the capture ends timeout_ms after that (0: never). NULL on
 * failure. next copies the next frame (at most max bytes) and returns its full length, or -1
 * when the capture ended (timeout, error). */
typedef struct pcieemu_capture pcieemu_capture_t;
pcieemu_capture_t* pcieemu_capture_open(pcieemu_t* emu, uint32_t port, int timeout_ms);
int pcieemu_capture_next(pcieemu_capture_t* cap, uint8_t* buf, int max);
void pcieemu_capture_close(pcieemu_capture_t* cap);

/* Decoded transactions (TraceService.Subscribe, docs/trace.md) in the machine's order. rids and
 * kinds are comma-separated lists ("01:00.0,01:10.0"; "config,mmio"; kinds: config, mmio, dma,
 * msi, iommu, frame, lifecycle); NULL or "" = all. open waits until the server has subscribed;
 * NULL on failure (pcieemu_last_error() names the bad field, e.g. "kinds[0]"). The stream has no
 * deadline. next blocks for the next event, fills *ev, copies the decoded text (NUL-terminated,
 * cut to max - 1 bytes) and returns the text's full length, or -1 when the stream ended
 * (cancelled, error). A subscriber that falls behind gets one PCIEEMU_TRACE_GAP event whose
 * `missed` is the count it lost. cancel (from any thread) ends a blocked next; close frees. */
enum {
  PCIEEMU_TRACE_CONFIG = 1, PCIEEMU_TRACE_MMIO = 2, PCIEEMU_TRACE_DMA = 3, PCIEEMU_TRACE_MSI = 4,
  PCIEEMU_TRACE_IOMMU = 5, PCIEEMU_TRACE_FRAME = 6, PCIEEMU_TRACE_LIFECYCLE = 7, PCIEEMU_TRACE_GAP = 8
};
typedef struct pcieemu_trace_event {
  uint64_t sequence;     /* strictly increasing */
  int64_t timestamp_ns;  /* since the machine started */
  uint32_t rid;          /* the requester */
  int kind;              /* PCIEEMU_TRACE_* */
  int write;             /* 1 for writes */
  uint64_t address;      /* config offset, MMIO address, DMA / fault IOVA, message address */
  uint64_t value;        /* value read or written, message data */
  uint64_t translated;   /* DMA: host address (0 when it did not translate) */
  uint32_t length;       /* access width or bytes */
  uint64_t missed;       /* gap events: events lost */
  char token[8];         /* CFG, MMIO, DMA, MSI, MSI-X, INTx, VTD-EVT, VTD, FRAME, LIFE, GAP */
} pcieemu_trace_event_t;
typedef struct pcieemu_trace pcieemu_trace_t;
pcieemu_trace_t* pcieemu_trace_open(pcieemu_t* emu, const char* rids, const char* kinds);
int pcieemu_trace_next(pcieemu_trace_t* trace, pcieemu_trace_event_t* ev, char* text, int max);
void pcieemu_trace_cancel(pcieemu_trace_t* trace);
void pcieemu_trace_close(pcieemu_trace_t* trace);

/* Capability offsets (0 if absent, -1 on error). */
int pcieemu_find_cap(pcieemu_t* emu, uint32_t rid, uint8_t id);
int pcieemu_find_ext_cap(pcieemu_t* emu, uint32_t rid, uint16_t id);

/* Linux-style SR-IOV. ari: PCIEEMU_ARI_AUTO (-1) uses ARI when the hierarchy supports it, 1 requires
 * it (-1 returned when unsupported), 0 clears it. Writes the VFs'
 * routing IDs to vf_rids (num_vfs entries); returns num_vfs, or -1. */
#define PCIEEMU_ARI_AUTO (-1)
int pcieemu_sriov_enable(pcieemu_t* emu, uint32_t pf, int num_vfs, int ari, uint32_t* vf_rids);
int pcieemu_sriov_disable(pcieemu_t* emu, uint32_t pf);

/* "bb:dd.f" <-> routing ID. parse returns 0 or -1; buf needs 8 bytes. */
int pcieemu_parse_bdf(const char* text, uint32_t* rid);
void pcieemu_format_bdf(uint32_t rid, char* buf);

#ifdef __cplusplus
}
#endif
#endif /* PCIEEMU_H */
