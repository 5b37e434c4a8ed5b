"""Critical sections hold Ctrl-C back until git and the ledger are consistent."""

from __future__ import annotations

import os
import signal

import pytest

from harness.critical import deferred_signals


def test_ctrl_c_inside_a_critical_section_is_delivered_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("wrote the commit and the ledger row")
    assert done == ["wrote the commit and the ledger row"]


def test_the_signal_mask_is_restored_after_the_section():
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    with deferred_signals():
        assert signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before
