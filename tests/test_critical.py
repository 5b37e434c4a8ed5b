"""Critical sections hold Ctrl-C back until git and the ledger are consistent."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from harness.critical import deferred_signals


@pytest.fixture(autouse=True)
def plain_ctrl_c():
    """Python's own Ctrl-C (KeyboardInterrupt, SIGINT/SIGTERM not blocked) for each test, whatever the
    launcher left: pytest started as a background job of a non-interactive shell inherits SIGINT
    ignored, and then a deferred Ctrl-C has nothing to raise."""
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if handler is not signal.default_int_handler or {signal.SIGINT, signal.SIGTERM} & mask:
        print(f"before this test: SIGINT handler {handler!r}, blocked {sorted(mask)}")
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    signal.signal(signal.SIGINT, handler)


@pytest.fixture
def other_thread():
    """A live second thread, as in the real harness (rich's refresh thread, torch's pools)."""
    stop = threading.Event()

    def idle():
        while not stop.is_set():
            time.sleep(0.01)  # a thread that does not block signals, so the kernel may pick it

    t = threading.Thread(target=idle, daemon=True)
    t.start()
    yield t
    stop.set()
    t.join()


def test_ctrl_c_inside_a_critical_section_is_delivered_after_it(other_thread):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)  # git and the ledger at work
            done.append("wrote the commit and the ledger row")
    assert done == ["wrote the commit and the ledger row"]


def test_nested_sections_deliver_once_at_the_outer_end(other_thread):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals():
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)
            done.append("still inside the outer section")
    assert done == ["still inside the outer section"]


def test_handlers_and_mask_are_restored_after_the_section():
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    handler = signal.getsignal(signal.SIGINT)
    with deferred_signals():
        assert signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == mask
    assert signal.getsignal(signal.SIGINT) is handler


def test_a_git_child_started_inside_does_not_die_of_the_terminals_sigint(tmp_path):
    import subprocess
    import sys

    code = "import signal, time; time.sleep(0.5); print(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set()))"
    with deferred_signals():
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip() == "True"
