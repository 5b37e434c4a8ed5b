"""Critical sections: SIGINT and SIGTERM are held back while git and the ledger are written.

Inside :func:`deferred_signals` a signal that arrives is only noted; when the section ends, the
handlers that were in force before are restored and a noted signal is handed to them (Ctrl-C
then raises ``KeyboardInterrupt``), so Ctrl-C can never interrupt a commit, a reset or a ledger
append half-way. Two mechanisms are needed:

- Python-level handlers run in the main thread whichever thread the kernel delivered the signal to,
  so swapping them catches the signal even with other threads alive (rich's refresh thread,
  torch's and llama.cpp's thread pools).
- The main thread also blocks the signals with ``pthread_sigmask``; children started inside (git)
  inherit that mask through fork and exec, so the terminal's SIGINT to the whole foreground
  process group cannot kill them mid-write.

Outside these sections (a training run, a proposal) Ctrl-C acts at once.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred_signals():
    """Hold SIGINT and SIGTERM for the duration of the block; deliver them after it.

    Sections nest (an inner one hands its signals to the outer one). Does nothing off the main
    thread, where Python cannot install handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old_handlers = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in _SIGNALS}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)  # a signal held by the mask arrives now
        for s, handler in old_handlers.items():
            signal.signal(s, handler)
        for signum in dict.fromkeys(pending):
            handler = old_handlers[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)
