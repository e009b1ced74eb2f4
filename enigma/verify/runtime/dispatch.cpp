// Enigma's CPU dispatcher for Metal kernels compiled by clang (see docs/verify.md).
//
// A kernel library (one per kernel, built by enigma.verify) exports `enigma_entry(const Ctx*)`,
// which calls the Metal kernel function for one thread. This library runs a launch: threadgroups one
// after another; the threads of a group as cooperative fibers that switch only at
// threadgroup_barrier and at simd-group functions (enigma_rt_barrier / enigma_rt_simd, called by the
// compatibility header with the caller's source line). It checks that every thread of a group
// reaches the same barrier and reports out-of-bounds accesses through guard pages around every
// buffer. By default a launch runs in a forked child process so that a wild write or a crash never
// takes down the caller; buffers are shared mappings, so the parent sees the results.
//
// Fork safety: the caller (a Python process) may have other threads (BLAS pools, executors) holding
// locks at the fork. So the child is created with a raw clone syscall (no pthread_atfork handlers run
// in the parent, e.g. OpenBLAS shutting down its pool under a thread that is using it) and does only
// async-signal-safe work: no malloc (fiber stacks, thread orders and the signal stack are allocated
// before the fork), no stdio locks (only snprintf into fixed buffers), no dynamic linker (libraries
// are loaded with RTLD_NOW; dladdr for fault reports runs in the parent after the child ended).
// Every wait is bounded: the child's own timer, then the parent's watchdog kills it.
#include <cerrno>
#include <csetjmp>
#include <ctime>
#include <cstdarg>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <sys/mman.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__x86_64__) && !defined(ENIGMA_FORCE_UCONTEXT)
#define ENIGMA_ASM_FIBERS 1  // a small assembly context switch (~10x faster than swapcontext)
#else
#include <ucontext.h>  // the portable fallback
#endif

namespace {

// ---- the per-thread context (layout shared with the generated wrapper, see wrapper.py) ----------
struct Ctx {
  void* const* bufs;
  uint32_t tpig[3], tpitg[3], tgpig[3], tptg[3], tgpg[3], tpg[3];
  uint32_t tiitg, tiisg, sgitg, sgptg, tpsg, qgitg, tiiqg, qgptg;
};
typedef void (*EntryFn)(const Ctx*);

// ---- error record (a shared page, so a forked child can report) --------------------------------
struct ErrInfo {
  int32_t code;  // 0 ok, 1 kernel error (msg), 2 fault (addr/rip), 3 timeout, 4 child died
  int32_t line;
  int32_t is_write;
  int32_t have_thread;
  uint32_t tid[3], gid[3];
  uint64_t addr, rip, so_base;
  int32_t buffer;  // index into the buffer registry, -1 if the address is in none
  int32_t sig;
  int64_t offset;  // byte offset from the buffer's data start
  char so_path[512];
  char msg[2048];
  uint64_t tg_bytes;  // threadgroup memory the kernel declared (allocated during the run)
  int32_t tg_var;     // id of the threadgroup variable a fault hit, -1 if none
  int32_t pad_;
  uint64_t tg_size;   // its size in bytes
  uint32_t other[3];  // race: the thread that accessed the location before
  int32_t other_write;  // race: that earlier access was a write
  uint32_t other_gid[3];  // race: its threadgroup
  int32_t pad2_;
};

// ---- guarded buffers ---------------------------------------------------------------------------
struct Buf {
  char* map;
  size_t map_len;
  char* data;
  size_t nbytes;
  size_t lo, hi;  // accessible region [lo, hi) of the mapping (between the guard pages)
  struct Shadow* shadow;  // race checking: per byte, the last writer and reader
};
// thread+1, group+1, barrier phase, simd epoch (see SimdSync) of the last write and read
struct Shadow { uint32_t w, r, wg, rg, wp, rp, ws, rs; };
constexpr int kMaxBufs = 64;
constexpr unsigned char kCanary = 0xA5;
Buf g_bufs[kMaxBufs];
int g_nbufs;  // slots below this may be in use
size_t g_page = 4096;

// ---- fibers ------------------------------------------------------------------------------------
enum State : uint8_t { READY, AT_BARRIER, AT_SIMD, DONE };
struct Fiber {
  void* sp;
#if !defined(ENIGMA_ASM_FIBERS)
  ucontext_t uc;
#endif
  State st;
  int line;
  const void* val;
  void* out;
  uint32_t size, mask;
  Ctx ctx;
  char* stack;
};

#if defined(ENIGMA_ASM_FIBERS)
extern "C" void enigma_swap(void** save_sp, void* to_sp);
asm(R"(
.text
.p2align 4
.local enigma_swap
.type enigma_swap,@function
enigma_swap:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size enigma_swap, .-enigma_swap
)");
#endif

EntryFn g_entry;
Fiber* g_fibers;
int g_nfib;  // fibers allocated
Fiber* g_cur;
void* g_sched_sp;
#if !defined(ENIGMA_ASM_FIBERS)
ucontext_t g_sched_uc;
#endif
bool g_fiber_mode;
size_t g_stack_size = 256 * 1024;
// the access being checked: a general-protection fault right after it (x86: an aligned vector move at
// a misaligned address reports no fault address) is explained by it (on_fault)
const char* g_last_access = nullptr;
size_t g_last_size = 0;
bool g_last_write = false;

ErrInfo* g_err;
sigjmp_buf g_abort;  // in-process mode: a fault or an error jumps here
char* g_altstack;  // the signal stack (allocated before a fork: the child does not allocate)
constexpr size_t kAltStack = 1 << 16;

void switch_to_sched() {
#if defined(ENIGMA_ASM_FIBERS)
  enigma_swap(&g_cur->sp, g_sched_sp);
#else
  swapcontext(&g_cur->uc, &g_sched_uc);
#endif
}

void fiber_main() {
  g_entry(&g_cur->ctx);
  g_cur->st = DONE;
  switch_to_sched();
  __builtin_trap();
}

void fiber_reset(Fiber* f) {
  f->st = READY;
  f->line = 0;
#if defined(ENIGMA_ASM_FIBERS)
  uintptr_t top = ((uintptr_t)f->stack + g_stack_size) & ~(uintptr_t)15;
  void** sp = (void**)top;
  *--sp = nullptr;                   // fake return address of fiber_main (keeps the ABI alignment)
  *--sp = (void*)&fiber_main;        // where enigma_swap's `ret` goes
  for (int i = 0; i < 6; i++) *--sp = nullptr;  // rbp rbx r12 r13 r14 r15
  f->sp = sp;
#else
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = f->stack;
  f->uc.uc_stack.ss_size = g_stack_size;
  f->uc.uc_link = nullptr;
  makecontext(&f->uc, fiber_main, 0);
#endif
}

void resume(Fiber* f) {
  g_cur = f;
#if defined(ENIGMA_ASM_FIBERS)
  enigma_swap(&g_sched_sp, f->sp);
#else
  swapcontext(&g_sched_uc, &f->uc);
#endif
}

bool ensure_fibers(int n) {
  if (n <= g_nfib) return true;
  Fiber* nf = (Fiber*)realloc(g_fibers, sizeof(Fiber) * n);
  if (!nf) return false;
  g_fibers = nf;
  for (int i = g_nfib; i < n; i++) {
    memset(&g_fibers[i], 0, sizeof(Fiber));
    // a stack with a guard page below it (an overflow faults instead of corrupting memory)
    char* m = (char*)mmap(nullptr, g_stack_size + g_page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return false;
    mprotect(m, g_page, PROT_NONE);
    g_fibers[i].stack = m + g_page;
    g_nfib = i + 1;
  }
  return true;
}

// ---- errors ------------------------------------------------------------------------------------
[[noreturn]] void fail() {
  siglongjmp(g_abort, 1);
}

void set_thread(const Ctx& c) {
  g_err->have_thread = 1;
  memcpy(g_err->tid, c.tpitg, sizeof g_err->tid);
  memcpy(g_err->gid, c.tgpig, sizeof g_err->gid);
}

[[noreturn]] void kernel_error(int line, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void kernel_error(int line, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_err->msg, sizeof g_err->msg, fmt, ap);
  va_end(ap);
  g_err->code = 1;
  g_err->line = line;
  fail();
}

uint64_t g_rng;
uint64_t rnd() {  // xorshift64*
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return g_rng * 2685821657736338717ull;
}
void order(int* o, int n, int schedule) {
  for (int i = 0; i < n; i++) o[i] = schedule == 1 ? n - 1 - i : i;
  if (schedule == 2)
    for (int i = n - 1; i > 0; i--) {
      int j = (int)(rnd() % (uint64_t)(i + 1));
      int t = o[i]; o[i] = o[j]; o[j] = t;
    }
}

// threadgroup variables: the harness rewrites each `threadgroup T name[N];` into a reference to
// memory from enigma_rt_tg_alloc(id, size): a mapping whose data ends against a guard page, so an
// out-of-bounds access faults like one of a buffer; filled with 0xFF before every threadgroup
struct TgVar {
  char* map;
  size_t map_len;
  char* data;
  size_t size;
  uint16_t* shadow;  // race checking: per byte, [4i] last writer, [4i+1] reader(s) in this interval,
                     // [4i+2], [4i+3] their simd epochs
};
constexpr int kMaxTg = 256;
TgVar g_tg[kMaxTg];
int g_ntg;  // ids below this may be allocated
unsigned long g_tg_bytes;

bool g_race;  // race checking on (the kernel library is instrumented with -fsanitize=thread)
// In-bounds data ranges seen recently (most accesses hit the same few arrays): an access inside one
// needs no search. Only data ranges are cached, so an out-of-bounds access never hits; cleared
// whenever buffers or threadgroup variables change and in race-checking runs (which record).
struct Range { const char* lo; const char* hi; };
constexpr int kRangeCache = 4;
Range g_ok[kRangeCache];
int g_ok_next;
void ok_clear() { for (auto& r : g_ok) r = Range{nullptr, nullptr}; }
void ok_add(const char* lo, size_t n) { g_ok[g_ok_next] = Range{lo, lo + n}; g_ok_next = (g_ok_next + 1) % kRangeCache; }

uint32_t g_group;  // linear index of the running threadgroup
uint32_t g_phase;  // barriers completed by the running threadgroup
// Simd-group rendezvous since the last barrier, per simdgroup: lanes that met at a simd-group call
// (simd_sum, simdgroup_barrier, ...) are ordered with respect to each other, as lanes of a GPU
// simdgroup are. An access records its simdgroup's epoch (the number of rendezvous so far); an
// earlier access by another lane of the same simdgroup is ordered if a later rendezvous had both.
constexpr int kMaxSimdSync = 1024;
struct SimdSync { uint32_t n; uint32_t mask[kMaxSimdSync]; };
SimdSync g_simd[32];  // at most 1024 threads: 32 simdgroups

void simd_sync_clear() {
  for (auto& x : g_simd) x.n = 0;
}

bool simd_ordered(uint32_t a, uint32_t b, uint32_t epoch_a) {  // thread indices in the group
  if (a / 32 != b / 32) return false;
  const SimdSync& s = g_simd[a / 32];
  const uint32_t both = (1u << (a % 32)) | (1u << (b % 32));
  for (uint32_t k = epoch_a; k < s.n && k < (uint32_t)kMaxSimdSync; k++)
    if ((s.mask[k] & both) == both) return true;
  return false;
}

uint32_t simd_epoch(uint32_t t) { return g_simd[t / 32].n; }

void tg_clear_shadow() {
  for (int i = 0; i < g_ntg; i++)
    if (g_tg[i].shadow) memset(g_tg[i].shadow, 0, 8 * g_tg[i].size);
}

void tg_reset() {
  for (int i = 0; i < g_ntg; i++) {
    if (g_tg[i].map) munmap(g_tg[i].map, g_tg[i].map_len);
    if (g_tg[i].shadow) munmap(g_tg[i].shadow, 8 * g_tg[i].size);
  }
  memset(g_tg, 0, sizeof g_tg);
  g_ntg = 0;
  g_tg_bytes = 0;
}

// ---- one threadgroup ---------------------------------------------------------------------------
struct Launch {
  uint32_t grid[3], block[3];
  void* const* bufs;
  int schedule;
};

void fill_ctx(Ctx& c, const Launch& L, const uint32_t g[3], uint32_t l) {
  const uint32_t bx = L.block[0], by = L.block[1];
  c.bufs = L.bufs;
  c.tpitg[0] = l % bx; c.tpitg[1] = (l / bx) % by; c.tpitg[2] = l / (bx * by);
  for (int d = 0; d < 3; d++) {
    c.tgpig[d] = g[d];
    c.tptg[d] = L.block[d];
    c.tgpg[d] = L.grid[d];
    c.tpg[d] = L.grid[d] * L.block[d];
    c.tpig[d] = g[d] * L.block[d] + c.tpitg[d];
  }
  const uint32_t n = bx * by * L.block[2];
  c.tiitg = l;
  c.tiisg = l % 32; c.sgitg = l / 32; c.sgptg = (n + 31) / 32; c.tpsg = 32;
  c.tiiqg = l % 4; c.qgitg = l / 4; c.qgptg = (n + 3) / 4;
}

void describe(char* s, size_t len, const Fiber& f) {
  snprintf(s, len, "thread_position_in_threadgroup (%u, %u, %u)", f.ctx.tpitg[0], f.ctx.tpitg[1],
           f.ctx.tpitg[2]);
}

// complete the simd-group rendezvous that can complete; true if any lane was released
bool resolve_simd(int n) {
  bool any = false;
  for (int base = 0; base < n; base += 32) {
    int end = base + 32 < n ? base + 32 : n;
    bool waiting = false, ready = false;
    for (int i = base; i < end; i++) {
      waiting |= g_fibers[i].st == AT_SIMD;
      ready |= g_fibers[i].st == READY;
    }
    if (!waiting || ready) continue;
    // Lanes at the same call (same line) form one rendezvous. Lanes on divergent paths wait at
    // different calls: the call with the smallest line goes first (lanes that skipped a branch wait
    // further down until the branch's lanes catch up, as a GPU reconverges after the branch).
    int first_line = -1, i = -1;
    for (int j = base; j < end; j++)
      if (g_fibers[j].st == AT_SIMD && (first_line < 0 || g_fibers[j].line < first_line)) {
        first_line = g_fibers[j].line;
        i = j;
      }
    {
      Fiber& a = g_fibers[i];
      uint32_t mask = 0;
      for (int j = base; j < end; j++)
        if (g_fibers[j].st == AT_SIMD && g_fibers[j].line == a.line) {
          if (g_fibers[j].size != a.size)
            kernel_error(a.line, "simd-group function at line %d called with values of different sizes "
                         "(%u and %u bytes) by lanes %d and %d", a.line, a.size, g_fibers[j].size,
                         i - base, j - base);
          mask |= 1u << (j - base);
        }
      char table[32 * 64];
      const uint32_t sz = a.size;
      if (sz > 64) kernel_error(a.line, "simd-group value of %u bytes is too large (at most 64)", sz);
      memset(table, 0, 32 * sz);
      for (int j = base; j < end; j++)
        if (mask >> (j - base) & 1) memcpy(table + (j - base) * sz, g_fibers[j].val, sz);
      if (g_race) {
        SimdSync& ss = g_simd[base / 32];
        if (ss.n < (uint32_t)kMaxSimdSync) ss.mask[ss.n] = mask;
        ss.n++;
      }
      for (int j = base; j < end; j++)
        if (mask >> (j - base) & 1) {
          memcpy(g_fibers[j].out, table, 32 * sz);
          g_fibers[j].mask = mask;
          g_fibers[j].st = READY;
        }
      any = true;
    }
  }
  return any;
}

void run_group_fibers(const Launch& L, const uint32_t g[3], int n, int* ord) {
  for (int i = 0; i < n; i++) {
    fill_ctx(g_fibers[i].ctx, L, g, (uint32_t)i);
    fiber_reset(&g_fibers[i]);
  }
  for (;;) {
    order(ord, n, L.schedule);
    for (int k = 0; k < n; k++) {
      Fiber* f = &g_fibers[ord[k]];
      if (f->st == READY) resume(f);
    }
    if (resolve_simd(n)) continue;
    bool yielded = false;  // threads that yielded at a threadgroup access (lockstep_yield) run on
    for (int i = 0; i < n && !yielded; i++) yielded = g_fibers[i].st == READY;
    if (yielded) continue;
    int first_wait = -1, first_done = -1;
    for (int i = 0; i < n; i++) {
      if (g_fibers[i].st == AT_BARRIER && first_wait < 0) first_wait = i;
      if (g_fibers[i].st == DONE && first_done < 0) first_done = i;
    }
    if (first_wait < 0) return;  // every thread finished
    char a[96], b[96];
    Fiber& w = g_fibers[first_wait];
    describe(a, sizeof a, w);
    set_thread(w.ctx);
    if (first_done >= 0) {
      describe(b, sizeof b, g_fibers[first_done]);
      kernel_error(w.line, "threadgroup_barrier at line %d is not reached by every thread of the "
                   "threadgroup: %s waits there but %s returned without reaching it (a return before "
                   "a barrier, or a barrier inside a branch that not every thread takes)", w.line, a, b);
    }
    for (int i = 0; i < n; i++)
      if (g_fibers[i].line != w.line) {
        describe(b, sizeof b, g_fibers[i]);
        kernel_error(w.line, "divergent threadgroup_barrier: %s waits at line %d but %s waits at line "
                     "%d; every thread of a threadgroup must reach the same barrier", a, w.line, b,
                     g_fibers[i].line);
      }
    for (int i = 0; i < n; i++) g_fibers[i].st = READY;
    if (g_race) tg_clear_shadow(), simd_sync_clear();  // a barrier orders every access before it
    g_phase++;
  }
}

int* g_ord;   // thread order scratch (allocated before a fork: the child does not allocate)
int* g_gord;  // threadgroup order

bool prepare(const Launch& L) {
  const uint64_t n = (uint64_t)L.block[0] * L.block[1] * L.block[2];
  const uint64_t ng = (uint64_t)L.grid[0] * L.grid[1] * L.grid[2];
  free(g_ord);
  free(g_gord);
  g_ord = (int*)malloc(sizeof(int) * (n ? n : 1));
  g_gord = (int*)malloc(sizeof(int) * (ng ? ng : 1));
  if (!g_ord || !g_gord) return false;
  return !g_fiber_mode || ensure_fibers((int)n);
}

void run_launch(const Launch& L) {
  const uint32_t n = L.block[0] * L.block[1] * L.block[2];
  const uint64_t ng = (uint64_t)L.grid[0] * L.grid[1] * L.grid[2];
  int* ord = g_ord;
  order(g_gord, (int)ng, L.schedule);
  Ctx direct;
  Fiber shim;  // in direct mode: lets a fault report name the thread
  for (uint64_t k = 0; k < ng; k++) {
    uint64_t gi = (uint64_t)g_gord[k];
    g_group = (uint32_t)gi;
    g_phase = 0;
    uint32_t g[3] = {(uint32_t)(gi % L.grid[0]), (uint32_t)(gi / L.grid[0] % L.grid[1]),
                     (uint32_t)(gi / L.grid[0] / L.grid[1])};
    for (int p = 0; p < g_ntg; p++)
      if (g_tg[p].data) memset(g_tg[p].data, 0xFF, g_tg[p].size);
    if (g_race) tg_clear_shadow(), simd_sync_clear();
    if (g_fiber_mode) {
      run_group_fibers(L, g, (int)n, ord);
    } else {
      order(ord, (int)n, L.schedule);
      g_cur = &shim;
      for (uint32_t t = 0; t < n; t++) {
        fill_ctx(direct, L, g, (uint32_t)ord[t]);
        shim.ctx = direct;
        g_entry(&direct);
      }
      g_cur = nullptr;
    }
  }
}

// ---- faults ------------------------------------------------------------------------------------
pid_t g_run_tid;  // in-process mode: the thread running the launch (0 in a forked child)
const int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGALRM, SIGABRT};
struct sigaction g_old[sizeof kSignals / sizeof kSignals[0]];

// A signal on another thread of the process while a launch runs in-process (the handlers are
// process-wide): hand it to the handler that was installed before, as if ours were not there.
void forward_signal(int sig, siginfo_t* si, void* ucv) {
  for (size_t i = 0; i < sizeof kSignals / sizeof kSignals[0]; i++) {
    if (kSignals[i] != sig) continue;
    const struct sigaction& o = g_old[i];
    if (o.sa_flags & SA_SIGINFO) {
      if (o.sa_sigaction) o.sa_sigaction(sig, si, ucv);
      return;
    }
    if (o.sa_handler == SIG_IGN) return;
    if (o.sa_handler != SIG_DFL) { o.sa_handler(sig); return; }
    // default action (terminate or core dump): a fault re-executes and ends the process as it would
    // have without us; an asynchronous signal is delivered again with the default action
    signal(sig, SIG_DFL);
    if (sig == SIGALRM || sig == SIGABRT || sig == SIGTRAP) syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
    return;
  }
}

void on_fault(int sig, siginfo_t* si, void* ucv) {
  if (g_run_tid && (pid_t)syscall(SYS_gettid) != g_run_tid) {
    forward_signal(sig, si, ucv);
    return;
  }
  ErrInfo* e = g_err;
  e->sig = sig;
  e->addr = (uint64_t)(uintptr_t)si->si_addr;
#if defined(__x86_64__) && defined(REG_RIP)
  ucontext_t* uc = (ucontext_t*)ucv;
  e->rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
  e->is_write = (uc->uc_mcontext.gregs[REG_ERR] & 2) ? 1 : 0;
#else
  (void)ucv;
#endif
  e->buffer = -1;  // (the library of e->rip is looked up by the parent: dladdr takes loader locks)
  for (int i = 0; i < kMaxBufs; i++) {
    const Buf& b = g_bufs[i];
    if (b.map && (char*)si->si_addr >= b.map && (char*)si->si_addr < b.map + b.map_len) {
      e->buffer = i;
      e->offset = (int64_t)((char*)si->si_addr - b.data);
    }
  }
  e->tg_var = -1;
  for (int i = 0; i < g_ntg; i++) {
    const TgVar& v = g_tg[i];
    if (v.map && (char*)si->si_addr >= v.map && (char*)si->si_addr < v.map + v.map_len) {
      e->tg_var = i;
      e->tg_size = v.size;
      e->offset = (int64_t)((char*)si->si_addr - v.data);
    }
  }
  if (sig == SIGSEGV && si->si_code == SI_KERNEL && g_last_size > 1 && g_last_access
      && (uintptr_t)g_last_access % g_last_size != 0) {
    // a misaligned access (e.g. a float4 at an address that is not a multiple of 16)
    for (int i = 0; i < kMaxBufs; i++) {
      const Buf& b = g_bufs[i];
      if (b.map && g_last_access >= b.map && g_last_access < b.map + b.map_len) {
        e->buffer = i;
        e->offset = (int64_t)(g_last_access - b.data);
      }
    }
    for (int i = 0; i < g_ntg; i++) {
      const TgVar& v = g_tg[i];
      if (v.map && g_last_access >= v.map && g_last_access < v.map + v.map_len) {
        e->tg_var = i;
        e->tg_size = v.size;
        e->offset = (int64_t)(g_last_access - v.data);
      }
    }
    e->is_write = g_last_write;
    snprintf(e->msg, sizeof e->msg, "misaligned %zu", g_last_size);
  }
  if (g_cur) set_thread(g_cur->ctx);
  if (sig == SIGALRM) {
    e->code = 3;
  } else {
    e->code = 2;
    if (e->buffer < 0 && g_fiber_mode) {
      for (int i = 0; i < g_nfib; i++)
        if ((char*)si->si_addr >= g_fibers[i].stack - g_page && (char*)si->si_addr < g_fibers[i].stack)
          snprintf(e->msg, sizeof e->msg, "stack overflow of a kernel thread (its stack is %zu KiB)",
                   g_stack_size / 1024);
    }
  }
  fail();
}

void install_handlers() {  // g_altstack is allocated by enigma_run before a fork
  stack_t ss = {};
  ss.ss_sp = g_altstack;
  ss.ss_size = kAltStack;
  sigaltstack(&ss, nullptr);
  for (size_t i = 0; i < sizeof kSignals / sizeof kSignals[0]; i++) {
    struct sigaction sa = {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(kSignals[i], &sa, &g_old[i]);
  }
}

void restore_handlers() {
  for (size_t i = 0; i < sizeof kSignals / sizeof kSignals[0]; i++) sigaction(kSignals[i], &g_old[i], nullptr);
  stack_t ss = {};
  ss.ss_flags = SS_DISABLE;
  sigaltstack(&ss, nullptr);
}

}  // namespace

// ---- the kernel-side calls (the compatibility header declares them) ----------------------------
extern "C" void enigma_rt_barrier(int line) {
  if (!g_fiber_mode || !g_cur)
    kernel_error(line, "threadgroup_barrier at line %d reached in a launch run without fibers "
                 "(internal: the harness did not see the barrier in the source)", line);
  g_cur->st = AT_BARRIER;
  g_cur->line = line;
  switch_to_sched();
}

extern "C" uint32_t enigma_rt_simd(const void* mine, uint32_t size, void* all, int line) {
  if (!g_fiber_mode || !g_cur)
    kernel_error(line, "simd-group function at line %d reached in a launch run without fibers "
                 "(internal: the harness did not see it in the source)", line);
  Fiber* f = g_cur;
  f->st = AT_SIMD;
  f->line = line;
  f->val = mine;
  f->out = all;
  f->size = size;
  switch_to_sched();
  return f->mask;
}

extern "C" uint32_t enigma_rt_lane() { return g_cur ? g_cur->ctx.tiisg : 0; }

extern "C" void enigma_rt_error(const char* msg, int line) { kernel_error(line, "%s", msg); }

extern "C" void* enigma_rt_tg_alloc(int id, unsigned long size, unsigned long align) {
  if (id >= 0 && id < g_ntg && g_tg[id].data) {
    if (g_tg[id].size != size)  // one declaration, two sizes: e.g. two template instantiations
      kernel_error(0, "threadgroup variable %d is declared with %lu and with %lu bytes (two instantiations "
                   "of one template declaration?); the harness gives each declaration one size", id,
                   (unsigned long)g_tg[id].size, size);
    return g_tg[id].data;
  }
  if (id < 0 || id >= kMaxTg) kernel_error(0, "more than %d threadgroup variables", kMaxTg);
  if (align < 16 || align > 4096 || (align & (align - 1))) align = align > 4096 ? 4096 : 16;
  const size_t padded = ((size ? size : 1) + align - 1) & ~(size_t)(align - 1);
  const size_t body = (padded + g_page - 1) / g_page * g_page;
  char* m = (char*)mmap(nullptr, body + 2 * g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) kernel_error(0, "cannot map %lu bytes of threadgroup memory", size);
  mprotect(m, g_page, PROT_NONE);
  mprotect(m + g_page + body, g_page, PROT_NONE);
  TgVar& v = g_tg[id];
  v.map = m;
  v.map_len = body + 2 * g_page;
  v.data = m + g_page + body - padded;
  v.size = size;
  memset(v.data, 0xFF, padded);
  if (g_race) {
    void* sh = mmap(nullptr, 8 * (size ? size : 1), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) kernel_error(0, "cannot map the race-checking shadow of threadgroup memory");
    v.shadow = (uint16_t*)sh;
  }
  if (id >= g_ntg) g_ntg = id + 1;
  g_tg_bytes += size;
  if (g_tg_bytes > 32 * 1024)
    kernel_error(0, "the kernel declares %lu bytes of threadgroup memory; Metal allows at most 32768 "
                 "(32 KiB) per threadgroup", g_tg_bytes);
  return v.data;
}

// [[threadgroup(i)]] parameters: their lengths are given at dispatch (enigma_set_tg_params); the
// storage is a threadgroup variable like a declared one (guarded, poisoned, counted, reset)
constexpr int kMaxTgParams = 31;
uint64_t g_tgp_len[kMaxTgParams];
int g_tgp_n, g_tgp_first;

extern "C" void enigma_set_tg_params(const uint64_t* lens, int n, int first_id) {
  g_tgp_n = n < kMaxTgParams ? n : kMaxTgParams;
  g_tgp_first = first_id;
  for (int i = 0; i < g_tgp_n; i++) g_tgp_len[i] = lens[i];
}

extern "C" void* enigma_rt_tg_param(int index) {
  if (index < 0 || index >= g_tgp_n || !g_tgp_len[index])
    kernel_error(0, "no length for the [[threadgroup(%d)]] parameter: give it at dispatch "
                 "(threadgroup_memory={%d: nbytes})", index, index);
  const int id = g_tgp_first + index;
  if (id >= kMaxTg) kernel_error(0, "more than %d threadgroup variables", kMaxTg);
  TgVar& v = g_tg[id];
  if (v.data && v.size != g_tgp_len[index]) {  // another length than the last launch's
    munmap(v.map, v.map_len);
    if (v.shadow) munmap(v.shadow, 8 * v.size);
    g_tg_bytes -= v.size;
    v = TgVar{};
    ok_clear();
  }
  return enigma_rt_tg_alloc(id, g_tgp_len[index], 16);
}

// ---- checked accesses: kernels are instrumented (-fsanitize=thread hooks) on every load and store ----
// Bounds of every buffer and threadgroup array; in a race-checking run also: two different threads
// of a group touching the same threadgroup byte between two barriers, at least one writing.
namespace {
void set_pc(ErrInfo* e, void* pc) {
  e->rip = (uint64_t)(uintptr_t)pc - 1;  // pc is a return address: the call is just before it
}

void local_to_3d(uint32_t l, uint32_t out[3]) {
  const uint32_t bx = g_cur->ctx.tptg[0], by = g_cur->ctx.tptg[1];
  out[0] = l % bx;
  out[1] = l / bx % by;
  out[2] = l / (bx * by);
}

[[noreturn]] void race(const TgVar& v, int id, size_t off, bool write, uint16_t other, bool other_write,
                       void* pc) {
  ErrInfo* e = g_err;
  e->code = 5;
  e->tg_var = id;
  e->tg_size = v.size;
  e->offset = (int64_t)off;
  e->is_write = write;
  set_pc(e, pc);
  if (other == 0xFFFF) {  // several readers
    e->other[0] = e->other[1] = e->other[2] = 0xFFFFFFFFu;
  } else {
    local_to_3d(other, e->other);
  }
  memcpy(e->other_gid, g_cur->ctx.tgpig, sizeof e->other_gid);
  e->other_write = other_write;
  set_thread(g_cur->ctx);
  fail();
}

// a device-buffer race: `other` is the other access's thread index in its group, `og` its group
[[noreturn]] void buf_race(int slot, size_t off, bool write, uint32_t other, uint32_t og, bool other_write,
                           void* pc) {
  ErrInfo* e = g_err;
  e->code = 5;
  e->buffer = slot;
  e->offset = (int64_t)off;
  e->is_write = write;
  set_pc(e, pc);
  local_to_3d(other, e->other);
  const uint32_t gx = g_cur->ctx.tgpg[0], gy = g_cur->ctx.tgpg[1];
  e->other_gid[0] = og % gx;
  e->other_gid[1] = og / gx % gy;
  e->other_gid[2] = og / (gx * gy);
  e->other_write = other_write;
  set_thread(g_cur->ctx);
  fail();
}

// Device buffers: two threads touching the same byte, at least one writing, race unless they are
// in the same threadgroup with a barrier between them (threadgroups are never ordered).
void buf_access(const char* a, size_t n, bool write, void* pc) {
  for (int slot = 0; slot < kMaxBufs; slot++) {
    Buf& b = g_bufs[slot];
    if (!b.map || a < b.data || a >= b.data + b.nbytes) continue;
    if (!b.shadow) {
      void* sh = mmap(nullptr, sizeof(Shadow) * b.nbytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (sh == MAP_FAILED) kernel_error(0, "cannot map the race-checking shadow of a buffer");
      b.shadow = (Shadow*)sh;
    }
    const uint32_t t = g_cur->ctx.tiitg, me = t + 1, g = g_group + 1, ph = g_phase, ep = simd_epoch(t);
    size_t off = (size_t)(a - b.data), end = off + n < b.nbytes ? off + n : b.nbytes;
    for (size_t k = off; k < end; k++) {
      Shadow& s = b.shadow[k];
      // unordered: another threadgroup, or another thread of this group with no barrier or simd-group
      // rendezvous between the two accesses
      if (s.w && (s.wg != g || (s.w != me && s.wp == ph && !simd_ordered(s.w - 1, t, s.ws))))
        buf_race(slot, k, write, s.w - 1, s.wg - 1, true, pc);
      if (write) {
        if (s.r && (s.rg != g || (s.r != me && s.rp == ph && !simd_ordered(s.r - 1, t, s.rs))))
          buf_race(slot, k, true, s.r - 1, s.rg - 1, false, pc);
        s.w = me, s.wg = g, s.wp = ph, s.ws = ep;
        s.r = 0;
      } else {
        s.r = me, s.rg = g, s.rp = ph, s.rs = ep;
      }
    }
    return;
  }
}

void race_cleanup() {
  for (int i = 0; i < kMaxBufs; i++)
    if (g_bufs[i].shadow) {
      munmap(g_bufs[i].shadow, sizeof(Shadow) * g_bufs[i].nbytes);
      g_bufs[i].shadow = nullptr;
    }
}

// An access outside the array it points into (its guard pages and padding included): the same
// report as a fault, with the caller's line (pc is the return address into the kernel).
[[noreturn]] void oob(int buffer, int tg, int64_t off, bool write, void* pc) {
  ErrInfo* e = g_err;
  e->code = 2;
  e->buffer = buffer;
  e->tg_var = tg;
  if (tg >= 0) e->tg_size = g_tg[tg].size;
  e->offset = off;
  e->is_write = write;
  set_pc(e, pc);
  if (g_cur) set_thread(g_cur->ctx);
  fail();
}

void tg_race_access(TgVar& v, int id, const char* a, size_t n, bool write, void* pc) {
  const uint32_t t = g_cur->ctx.tiitg;
  const uint16_t me = (uint16_t)(t + 1), ep = (uint16_t)simd_epoch(t);
  size_t off = (size_t)(a - v.data), end = off + n < v.size ? off + n : v.size;
  for (size_t b = off; b < end; b++) {
    uint16_t* e = &v.shadow[4 * b];  // writer, reader(s), writer's epoch, reader's epoch
    if (e[0] && e[0] != me && !simd_ordered(e[0] - 1u, t, e[2]))
      race(v, id, b, write, (uint16_t)(e[0] - 1), true, pc);
    if (write) {
      if (e[1] == 0xFFFF || (e[1] && e[1] != me && !simd_ordered(e[1] - 1u, t, e[3])))
        race(v, id, b, true, e[1] == 0xFFFF ? (uint16_t)0xFFFF : (uint16_t)(e[1] - 1), false, pc);
      e[0] = me, e[2] = ep;
      e[1] = 0;  // later accesses are checked against this write, which is ordered after the reads
    } else if (e[1] == 0 || e[1] == me) {
      e[1] = me, e[3] = ep;
    } else if (!simd_ordered(e[1] - 1u, t, e[3])) {
      e[1] = 0xFFFF;  // several unordered readers
    } else {
      e[1] = me, e[3] = ep;
    }
  }
}

// Every load and store of the kernel (the library is instrumented, see clang.py): an address inside
// the mapping of a threadgroup array or a buffer must lie within its data (else an out-of-bounds
// report naming it); in a race-checking run the access is also recorded. `atomic` accesses are
// bounds-checked only (atomics never race).
// Threadgroup memory in lockstep: with fibers (a kernel with barriers or simd-group calls), every
// thread yields at each threadgroup access, and the scheduler resumes the threads in turn, so the
// k-th threadgroup access of every thread happens before any thread's (k+1)-th, as the lanes of a
// simdgroup execute on a GPU. Warp-synchronous code that relies on it (ggml's flash attention
// stores a reduction from several lanes to one address in successive loop iterations: the last
// iteration's lane must win) computes what the GPU computes; race_check still reports such code.
inline void lockstep_yield() {
  g_cur->st = READY;
  switch_to_sched();
}

inline void access(const void* p, size_t n, bool write, void* pc, bool atomic = false) {
  const char* a = (const char*)p;
  g_last_access = a, g_last_size = n, g_last_write = write;
  const bool lockstep = g_fiber_mode && g_cur && !atomic;  // an atomic's load and store stay together
  if (!g_race && !lockstep)
    for (const Range& r : g_ok)
      if (a >= r.lo && a + n <= r.hi) return;
  for (int id = 0; id < g_ntg; id++) {
    TgVar& v = g_tg[id];
    if (!v.map || a < v.map || a >= v.map + v.map_len) continue;
    if (a < v.data || a + n > v.data + v.size) oob(-1, id, (int64_t)(a - v.data), write, pc);
    if (g_race && g_cur && v.shadow && !atomic) tg_race_access(v, id, a, n, write, pc);
    else if (!g_race && !lockstep) ok_add(v.data, v.size);
    if (lockstep) lockstep_yield();
    return;
  }
  if (lockstep && !g_race)
    for (const Range& r : g_ok)
      if (a >= r.lo && a + n <= r.hi) return;
  for (int slot = 0; slot < g_nbufs; slot++) {
    const Buf& b = g_bufs[slot];
    if (!b.map || a < b.map || a >= b.map + b.map_len) continue;
    if (a < b.data || a + n > b.data + b.nbytes) oob(slot, -1, (int64_t)(a - b.data), write, pc);
    if (g_race && g_cur && !atomic) buf_access(a, n, write, pc);
    else if (!g_race) ok_add(b.data, b.nbytes);
    return;
  }
}
}  // namespace

#define ENIGMA_TSAN(n)                                                                           \
  extern "C" void __tsan_read##n(void* p) { access(p, n, false, __builtin_return_address(0)); }  \
  extern "C" void __tsan_write##n(void* p) { access(p, n, true, __builtin_return_address(0)); }  \
  extern "C" void __tsan_unaligned_read##n(void* p) { access(p, n, false, __builtin_return_address(0)); } \
  extern "C" void __tsan_unaligned_write##n(void* p) { access(p, n, true, __builtin_return_address(0)); } \
  extern "C" void __tsan_volatile_read##n(void* p) {  /* atomics: bounds only, never a race */ \
    access(p, n, false, __builtin_return_address(0), true); }                                    \
  extern "C" void __tsan_volatile_write##n(void* p) { access(p, n, true, __builtin_return_address(0), true); }
ENIGMA_TSAN(1)
ENIGMA_TSAN(2)
ENIGMA_TSAN(4)
ENIGMA_TSAN(8)
ENIGMA_TSAN(16)
#undef ENIGMA_TSAN
extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_vptr_update(void**, void*) {}
extern "C" void __tsan_vptr_read(void**) {}
extern "C" void __tsan_read_range(void* p, unsigned long n) { access(p, n, false, __builtin_return_address(0)); }
extern "C" void __tsan_write_range(void* p, unsigned long n) { access(p, n, true, __builtin_return_address(0)); }
// struct copies and fills (memcpy/memmove/memset calls of the kernel)
extern "C" void* __tsan_memcpy(void* d, const void* s, unsigned long n) {
  if (n) access(s, n, false, __builtin_return_address(0)), access(d, n, true, __builtin_return_address(0));
  return memcpy(d, s, n);
}
extern "C" void* __tsan_memmove(void* d, const void* s, unsigned long n) {
  if (n) access(s, n, false, __builtin_return_address(0)), access(d, n, true, __builtin_return_address(0));
  return memmove(d, s, n);
}
extern "C" void* __tsan_memset(void* d, int c, unsigned long n) {
  if (n) access(d, n, true, __builtin_return_address(0));
  return memset(d, c, n);
}

#if defined(__clang__)
// float -> bfloat conversion (round to nearest even); clang calls it, older libgcc lacks it
extern "C" __bf16 __truncsfbf2(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t r = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40)
                                               : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  __bf16 b;
  memcpy(&b, &r, 2);
  return b;
}
#endif

namespace {
constexpr double kWatchdogGrace = 5.0;  // seconds after the timeout before the child is killed

double now_s() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// fork without pthread_atfork handlers (the child runs only this file's async-signal-safe code)
pid_t spawn_child() {
#if defined(__linux__) && defined(SYS_clone)
  return (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, 0UL, 0UL, 0UL);
#else
  return fork();
#endif
}
}  // namespace

// ---- the Python-facing API (ctypes) -------------------------------------------------------------
extern "C" int enigma_buf_alloc(size_t nbytes, char** data_out) {
  int slot = -1;
  for (int i = 0; i < kMaxBufs; i++)
    if (!g_bufs[i].map) { slot = i; break; }
  if (slot < 0) return -1;
  if (slot >= g_nbufs) g_nbufs = slot + 1;
  g_page = (size_t)sysconf(_SC_PAGESIZE);
  const size_t padded = (nbytes + 63) & ~(size_t)63;
  const size_t body = ((padded ? padded : 64) + g_page - 1) / g_page * g_page;
  const size_t len = body + 2 * g_page;
  // a shared mapping: a forked child's writes are seen here; PROT_NONE pages on both sides
  char* m = (char*)mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return -2;
  mprotect(m, g_page, PROT_NONE);
  mprotect(m + g_page + body, g_page, PROT_NONE);
  Buf& b = g_bufs[slot];
  b.map = m;
  b.map_len = len;
  b.lo = g_page;
  b.hi = g_page + body;
  // the data ends at the upper guard page (rounded to 64 bytes): an overrun faults at once
  b.data = m + g_page + body - (padded ? padded : 64);
  b.nbytes = nbytes;
  memset(m + b.lo, kCanary, body);
  *data_out = b.data;
  return slot;
}

extern "C" void enigma_buf_free(int slot) {
  if (slot < 0 || slot >= kMaxBufs || !g_bufs[slot].map) return;
  munmap(g_bufs[slot].map, g_bufs[slot].map_len);
  g_bufs[slot] = Buf{};
}

// first corrupted padding byte as an offset from the data start, or INT64_MIN if none
extern "C" int64_t enigma_buf_check(int slot) {
  const Buf& b = g_bufs[slot];
  for (char* p = b.map + b.lo; p < b.map + b.hi; p++) {
    if (p >= b.data && p < b.data + b.nbytes) { p = b.data + b.nbytes - 1; continue; }
    if ((unsigned char)*p != kCanary) return (int64_t)(p - b.data);
  }
  return INT64_MIN;
}

extern "C" size_t enigma_err_size() { return sizeof(ErrInfo); }

// Run a launch. schedule: 0 forward, 1 reverse, 2 random. isolate: run in a forked child.
// Returns 0 on success, otherwise the ErrInfo code (details in *err).
extern "C" int enigma_run(EntryFn entry, void* const* bufs, const uint32_t* grid, const uint32_t* block,
                          int schedule, uint64_t seed, int fibers,
                          int isolate, double timeout_s, int race, ErrInfo* err) {
  static ErrInfo* shared_err;
  if (!shared_err) {
    void* p = mmap(nullptr, sizeof(ErrInfo), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    shared_err = (ErrInfo*)p;
  }
  memset(shared_err, 0, sizeof(ErrInfo));
  shared_err->buffer = -1;
  shared_err->tg_var = -1;
  g_page = (size_t)sysconf(_SC_PAGESIZE);
  g_err = shared_err;
  ok_clear();
  if (g_entry != entry || g_race != (race != 0)) tg_reset();  // another kernel: its own variables
  g_entry = entry;
  g_race = race != 0;
  g_fiber_mode = fibers != 0;
  g_rng = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
  if (!g_rng) g_rng = 1;
  Launch L;
  memcpy(L.grid, grid, sizeof L.grid);
  memcpy(L.block, block, sizeof L.block);
  L.bufs = bufs;
  L.schedule = schedule;
  if (!prepare(L)) {
    snprintf(shared_err->msg, sizeof shared_err->msg, "cannot allocate the fibers of a %ux%ux%u threadgroup",
             L.block[0], L.block[1], L.block[2]);
    shared_err->code = 1;
    memcpy(err, shared_err, sizeof(ErrInfo));
    return 1;
  }
  if (!g_altstack) g_altstack = (char*)malloc(kAltStack);
  if (!g_altstack) return -1;
  if (timeout_s <= 0 || !(timeout_s < 1e9)) timeout_s = 1e9;  // never unbounded
  if (isolate) {
    // (no fflush before the fork: it would wait for stdio locks other threads may hold, and the
    // child never flushes inherited buffers: it leaves with exit_group, not exit)
    const pid_t pid = spawn_child();
    if (pid < 0) return -2;
    if (pid == 0) {
      // the child: only async-signal-safe work from here on (see the top of this file)
      sigset_t all;
      sigemptyset(&all);
      for (int sig : kSignals) sigaddset(&all, sig);
      sigaddset(&all, SIGINT);
      sigaddset(&all, SIGTERM);
      sigprocmask(SIG_UNBLOCK, &all, nullptr);  // the calling thread may have blocked them
      signal(SIGINT, SIG_DFL);   // not the parent's (Python's) handlers
      signal(SIGTERM, SIG_DFL);
      signal(SIGPIPE, SIG_DFL);
#if defined(__linux__)
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the caller
#endif
      install_handlers();
      struct itimerval it = {};
      it.it_value.tv_sec = (long)timeout_s;
      it.it_value.tv_usec = (long)((timeout_s - (double)(long)timeout_s) * 1e6);
      if (!it.it_value.tv_sec && !it.it_value.tv_usec) it.it_value.tv_usec = 1;
      setitimer(ITIMER_REAL, &it, nullptr);
      if (sigsetjmp(g_abort, 0) == 0) run_launch(L);
      g_err->tg_bytes = g_tg_bytes;
      syscall(SYS_exit_group, g_err->code);  // _exit without any libc bookkeeping
      _exit(g_err->code);
    }
    // the parent: wait for the child; the watchdog kills it if its own timer did not end it
    int status = 0;
    const double start = now_s(), limit = timeout_s + kWatchdogGrace;
    long nap_ns = 20000;
    bool killed = false;
    for (;;) {
      const pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if (r < 0 && errno != EINTR) { status = 0; break; }
      if (now_s() - start > limit) {
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        killed = true;
        break;
      }
      struct timespec ts = {0, nap_ns};
      nanosleep(&ts, nullptr);
      if (nap_ns < 2000000) nap_ns *= 2;
    }
    if (killed && shared_err->code == 0) {
      shared_err->code = 3;  // hung where its own timer could not end it
      snprintf(shared_err->msg, sizeof shared_err->msg, "killed by the watchdog after %.0f s", limit);
    } else if (WIFSIGNALED(status) && shared_err->code == 0) {
      shared_err->code = 4;
      shared_err->sig = WTERMSIG(status);
    }
  } else {
    g_run_tid = (pid_t)syscall(SYS_gettid);
    install_handlers();
    // a timer that signals this thread only (a process-wide SIGALRM could land on another thread)
    timer_t timer;
    bool have_timer = false;
#if defined(__linux__)
    struct sigevent sev = {};
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGALRM;
    sev._sigev_un._tid = g_run_tid;
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) == 0) {
      struct itimerspec its = {};
      its.it_value.tv_sec = (time_t)timeout_s;
      its.it_value.tv_nsec = (long)((timeout_s - (double)(long)timeout_s) * 1e9);
      if (!its.it_value.tv_sec && !its.it_value.tv_nsec) its.it_value.tv_nsec = 1;
      timer_settime(timer, 0, &its, nullptr);
      have_timer = true;
    }
#endif
    if (sigsetjmp(g_abort, 1) == 0) run_launch(L);
    shared_err->tg_bytes = g_tg_bytes;
    race_cleanup();
    if (have_timer) timer_delete(timer);
    restore_handlers();
    g_run_tid = 0;
    g_cur = nullptr;
  }
  // which library the faulting instruction is in (here, not in the child or the signal handler)
  Dl_info di;
  if (shared_err->rip && dladdr((void*)(uintptr_t)shared_err->rip, &di) && di.dli_fname) {
    shared_err->so_base = (uint64_t)(uintptr_t)di.dli_fbase;
    snprintf(shared_err->so_path, sizeof shared_err->so_path, "%s", di.dli_fname);
  }
  memcpy(err, shared_err, sizeof(ErrInfo));
  return shared_err->code;
}
