"""A test hook that kills (or signals) this process at a chosen point; inert unless
``HQVAE_FAULT_INJECT`` is set. The reliability tests use it to land a ``kill -9`` exactly where
they want it (tests/test_reliability.py).

    HQVAE_FAULT_INJECT="step:7"            kill -9 at the start of this process's 7th training step
    HQVAE_FAULT_INJECT="write:3,swap:1"    ... in its 3rd atomic file write (temporary file written,
                                           target not yet replaced: what any kill during the write
                                           leaves), or in its 1st checkpoint swap (old folder moved
                                           aside, new one not yet in place)
    HQVAE_FAULT_INJECT="step:5:SIGTERM"    send SIGTERM instead of SIGKILL
    HQVAE_FAULT_INJECT="step:7@1"          only in the process of rank 1

Points are counted per process. Under torchrun the hook acts in the first attempt only
(``TORCHELASTIC_RESTART_COUNT`` unset or 0), so that the restarted run can finish.
"""
from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "HQVAE_FAULT_INJECT"
_reached: Counter = Counter()


def point(event: str) -> None:
    """Count one ``event`` ("step", "write" or "swap") and act if the hook names this occurrence."""
    spec = os.environ.get(ENV)
    if not spec or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return
    _reached[event] += 1
    for entry in spec.split(","):
        where, _, rank = entry.partition("@")
        name, count, *signal_name = where.strip().split(":")
        if name == event and int(count) == _reached[event] and rank in ("", os.environ.get("RANK", "0")):
            os.kill(os.getpid(), getattr(signal, signal_name[0]) if signal_name else signal.SIGKILL)
