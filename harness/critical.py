"""Critical sections: SIGINT and SIGTERM are held back while git and the ledger are written.

Inside :func:`deferred_signals` the signals are blocked with ``pthread_sigmask``; one that arrives
stays pending and is delivered when the block ends, so Ctrl-C can never interrupt a commit, a
reset or a ledger append half-way. Children started inside (git) inherit the mask, so the
terminal's SIGINT to the foreground process group does not kill them either. Outside these
sections (a training run, a proposal) Ctrl-C acts at once.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def deferred_signals():
    """Block SIGINT and SIGTERM in the block; a pending one is delivered on exit.

    Does nothing off the main thread (signals are only delivered to the main thread in Python).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
