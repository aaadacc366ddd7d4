"""Ctrl+C and SIGTERM for the command line: the chunk in progress is finished and saved first.

The library itself installs no signal handler: a Python caller's Ctrl+C stops `ts.run` at
once (every finished chunk is on disk, written atomically, and `resume=True` continues). The
command line owns its process, so it defers the signal to the end of the chunk in progress
(`interrupts_deferred`, entered around each chunk through `run`'s `chunk_guard`) and hears it
even while the main thread is stuck inside one long call (`hear_signals_while_busy`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading


class Interrupted(KeyboardInterrupt):
    """Ctrl+C (SIGINT) or SIGTERM stopped a sweep after the chunk in progress was saved."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a chunk: the command line stops there as Ctrl+C's KeyboardInterrupt
    does (under SIGTERM's default action the process vanished, its lock left behind and no
    word said)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminated(signum, frame):
    _DEFERRAL.heard += 1
    raise Terminated(signum)


ACK_MESSAGE = ("\ntrainscape: stopping once the chunk in progress is saved "
               "(again to stop now)")


class _Deferral:
    """What `interrupts_deferred` (in the main thread) and `hear_signals_while_busy` (in a
    thread of its own) share about the chunk in progress."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = False  # inside interrupts_deferred
        self.acked = False  # the acknowledgement has been printed for this chunk
        self.heard = 0  # signals the main thread's handler has run for, over the process


_DEFERRAL = _Deferral()


def _acknowledge() -> None:
    """Print ACK_MESSAGE once per deferred chunk, whichever thread hears the signal first."""
    with _DEFERRAL.lock:
        if _DEFERRAL.acked:
            return
        _DEFERRAL.acked = True
    print(ACK_MESSAGE, file=sys.stderr, flush=True)


@contextlib.contextmanager
def interrupts_deferred():
    """Let the chunk in progress finish and be saved before Ctrl+C or SIGTERM stop the sweep.

    The computation cannot be interrupted anyway while XLA runs it, so deferring the signal to
    the end of the chunk costs no responsiveness and keeps its result; a second signal acts at
    once. Leaves custom handlers alone, and does nothing outside the main thread. (Python runs
    this handler only when the main thread gets back from XLA; `hear_signals_while_busy`
    acknowledges the signal sooner when it does not.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    previous = {}

    def handler(signum, frame):
        got.append(signum)
        _DEFERRAL.heard += 1
        signal.signal(signum, previous[signum])
        _acknowledge()

    for s, defaults in ((signal.SIGINT, (signal.default_int_handler,)),
                        (signal.SIGTERM, (signal.SIG_DFL, _terminated))):
        if (h := signal.getsignal(s)) in defaults:
            previous[s] = h
            signal.signal(s, handler)
    with _DEFERRAL.lock:
        _DEFERRAL.active, _DEFERRAL.acked = True, False
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        with _DEFERRAL.lock:
            _DEFERRAL.active = False
    if got:
        raise Interrupted(got[0])


# How long the main thread has to act on a signal itself before `hear_signals_while_busy`
# acts for it. On a CPU JAX hands control back within milliseconds.
SIGNAL_GRACE_SECONDS = 1.0


@contextlib.contextmanager
def hear_signals_while_busy(stop_now, grace: float = SIGNAL_GRACE_SECONDS):
    """Act on Ctrl+C and SIGTERM even while the main thread is stuck inside one long call.

    Python runs signal handlers in the main thread only, between two bytecodes. On a CPU JAX
    hands control back while it waits for XLA, so `interrupts_deferred` hears a signal at once;
    on an NVIDIA H200 it did not within 60 s while a long chunk computed (JAX 0.11.2): the
    first Ctrl+C went unacknowledged. The C-level handler still writes every signal's number
    to a wakeup file descriptor: a thread reads it and, when the main thread has not dealt
    with a signal within `grace` seconds, does it instead. The first one, inside a chunk, is
    acknowledged as `interrupts_deferred` would; any later one, or one outside a chunk, calls
    `stop_now(signum)`, which must end the process (the main thread cannot be unwound from
    another thread). For the command line only: it owns the process, its signal handling and
    its wakeup descriptor. Does nothing outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except ValueError:  # pragma: no cover - not the main interpreter
        os.close(r)
        os.close(w)
        yield
        return
    # SIGTERM's default action ends the process before any Python code or the wakeup fd sees
    # it: outside a chunk it raises Terminated instead
    term = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    if term:
        signal.signal(signal.SIGTERM, _terminated)
    done = threading.Event()
    watched = {int(signal.SIGINT), int(signal.SIGTERM)}
    heard_before = _DEFERRAL.heard  # by earlier sweeps of this process

    def watch() -> None:
        count = 0
        while True:
            try:
                data = os.read(r, 64)
            except OSError:
                return
            if not data or done.is_set():
                return
            for signum in data:
                if signum not in watched:
                    continue
                count += 1
                if done.wait(grace) or _DEFERRAL.heard - heard_before >= count:
                    continue  # over, or the main thread heard it
                with _DEFERRAL.lock:
                    first_in_chunk = _DEFERRAL.active and not _DEFERRAL.acked and count == 1
                if first_in_chunk:
                    _acknowledge()
                else:
                    stop_now(signum)

    watcher = threading.Thread(target=watch, name="trainscape-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        if term:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.set_wakeup_fd(old)
        os.close(w)  # ends the watcher's read
        watcher.join(grace + 1.0)
        os.close(r)
