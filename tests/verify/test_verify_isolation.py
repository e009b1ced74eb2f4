"""The isolated launch is safe in a multi-threaded caller and never hangs it: the dispatcher forks
the child in C (no pthread_atfork handlers), the child does only C work with its signals unblocked,
and a child its own timer cannot end is killed by the watchdog and reported."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from toolcheck import need_tool

from enigma.verify import KernelError, compile_msl, run_msl

pytestmark = pytest.mark.needs_clang
H = "#include <metal_stdlib>\nusing namespace metal;\n\n"
SPIN = H + """kernel void k(device int* a [[buffer(0)]], uint t [[thread_position_in_grid]]) {
    while (*(device volatile int*)a == 0) { a[1] += 1; }
}"""
ADD = H + """kernel void k(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
              uint t [[thread_position_in_grid]]) {
    y[t] = x[t] + 1.0f;
}"""


@pytest.fixture(autouse=True, scope="module")
def _clang():
    need_tool("clang++-22", "clang++-19", "clang++")


def test_timeout_is_reported_even_if_the_calling_thread_blocks_sigalrm():
    """The child inherits the caller's signal mask; it unblocks its timer signal itself, so the
    timeout ends it promptly (not only the watchdog, 5 s later)."""
    prog = compile_msl(SPIN)
    result: list[BaseException | None] = []

    def worker() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGINT})
        try:
            prog.run({0: np.zeros(4, np.int32)}, grid=1, block=1, timeout=0.3)
            result.append(None)
        except BaseException as e:  # noqa: BLE001
            result.append(e)

    t0 = time.monotonic()
    th = threading.Thread(target=worker)
    th.start()
    th.join(30)
    assert not th.is_alive()
    assert isinstance(result[0], KernelError) and "did not finish within the timeout" in str(result[0])
    assert "watchdog" not in str(result[0])
    assert time.monotonic() - t0 < 4.0


def test_a_child_that_blocks_its_timer_is_killed_by_the_watchdog():
    """A kernel that blocks every signal (so its own timer cannot stop it) and spins: the parent's
    watchdog kills it after the timeout plus a grace period and reports it."""
    src = H + """extern "C" int sigprocmask(int how, const ulong* set, ulong* old);
kernel void k(device int* a [[buffer(0)]], uint t [[thread_position_in_grid]]) {
    ulong all[16];
    for (int i = 0; i < 16; i++) all[i] = ~0ul;
    sigprocmask(0, all, 0);  // SIG_BLOCK
    while (*(device volatile int*)a == 0) { a[1] += 1; }
}"""
    t0 = time.monotonic()
    with pytest.raises(KernelError, match=r"did not finish within the timeout \(killed by the watchdog"):
        run_msl(src, np.zeros(4, np.int32), grid=1, block=1, timeout=0.2)
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan")])
def test_a_launch_always_has_a_finite_timeout(timeout):
    with pytest.raises(ValueError, match="timeout"):
        compile_msl(ADD).run({0: np.zeros(4, np.float32), 1: np.zeros(4, np.float32)}, grid=1, block=4,
                             timeout=timeout)


STRESS = """
import concurrent.futures, threading, numpy as np
from enigma.verify import run_msl
src = {src!r}
stop = threading.Event()

def blas():  # keeps BLAS (and its thread pool) busy while the main thread forks launch children
    a = np.random.default_rng(0).standard_normal((300, 300))
    while not stop.is_set():
        a = np.tanh(a @ a.T * 1e-3)

def alloc():  # malloc, the import machinery (loader locks) and the GIL in use at the fork
    while not stop.is_set():
        [bytearray(4096) for _ in range(100)]
        __import__("json").dumps(list(range(100)))

workers = [threading.Thread(target=f, daemon=True) for f in (blas, blas, alloc)]
for w in workers:
    w.start()
with concurrent.futures.ThreadPoolExecutor(4) as ex:
    def launch(i):
        x = np.arange(256, dtype=np.float32) + i
        y = np.zeros_like(x)
        run_msl(src, x, y, grid=4, block=64, timeout=20)
        assert (y == x + 1).all()
        return i
    assert sorted(ex.map(launch, range({n}))) == list(range({n}))
stop.set()
print("ok")
"""


def test_isolated_launches_from_a_busy_multithreaded_process():
    """Launches from several threads while others run BLAS, allocate and import: every launch
    completes (run in a child interpreter so that a deadlock is a timeout here, not a hung suite)."""
    code = STRESS.format(src=ADD, n=150)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="4", OMP_NUM_THREADS="4")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stdout[-2000:], r.stderr[-4000:])


IN_PROCESS = """
import threading, time, numpy as np
from enigma.verify import KernelError, compile_msl, run_msl
prog = compile_msl({spin!r})
errors = []

def launch():
    for _ in range(3):
        try:
            prog.run({{0: np.zeros(4, np.int32)}}, grid=1, block=1, timeout=0.2, isolate=False)
        except KernelError as e:
            errors.append(str(e))

th = threading.Thread(target=launch)
th.start()
spins = 0
while th.is_alive():  # the main thread keeps running Python (it would take a process-wide SIGALRM)
    spins += 1
th.join()
assert len(errors) == 3 and all("did not finish within the timeout" in e for e in errors), errors
a, b = np.arange(4, dtype=np.float32), np.zeros(4, np.float32)
run_msl({add!r}, a, b, grid=1, block=4, isolate=False)
assert (b == a + 1).all()
print("ok")
"""


def test_in_process_timeout_only_interrupts_the_launching_thread():
    """isolate=False from a worker thread: the timeout signal goes to that thread, never to another
    thread of the process (the handler would longjmp across threads and crash the interpreter)."""
    code = IN_PROCESS.format(spin=SPIN, add=ADD)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stdout[-2000:], r.stderr[-4000:])
