"""Stopping a run cleanly on SIGTERM, SIGINT or SIGUSR1 (what clusters send to pre-empt a job).

While the training loop runs, the first of these signals asks it to stop: it finishes the step it
is in, writes ``checkpoints/last`` (and the staged best), records status "interrupted" and raises
:class:`Interrupted`; ``hqvae train`` then exits with 128 + the signal number (143 for SIGTERM,
130 for SIGINT, 138 for SIGUSR1), and ``--resume`` continues bit for bit. A second signal raises
:class:`Interrupted` at once, wherever the process is: every write is atomic and a checkpoint
swap cut short is undone on the next start, so nothing is left damaged. Processes of a DDP run
agree on the step to stop after (one small all-reduce per step), so that they checkpoint together.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

import torch

from hqvae.distributed import all_reduce

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Interrupted(BaseException):
    """Training stopped on a signal; ``exit_code`` is the conventional 128 + signal number.
    ``at_once``: a second signal stopped it where it was, not after a checkpoint."""

    def __init__(self, signum: int, at_once: bool = False):
        self.signum, self.at_once, self.exit_code = signum, at_once, 128 + signum
        self.name = signal.Signals(signum).name
        super().__init__(f"{self.name}{' (second signal: stopped at once)' if at_once else ''}")


class StopSignals:
    """Records the first stop signal; raises :class:`Interrupted` on the second."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise Interrupted(signum, at_once=True)
        self.signum = signum

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopSignals"]:
        """Handle the stop signals inside the block (main thread only; elsewhere nothing changes)."""
        main = threading.current_thread() is threading.main_thread()
        previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS} if main else {}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def agreed(self) -> int | None:
        """The signal to stop on now, the same on every rank (every rank must call it each step)."""
        return int(all_reduce(torch.tensor([self.signum or 0]), "max")) or None
