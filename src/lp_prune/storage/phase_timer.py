"""Wall time per phase of a run: summary.json's timings_s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseTimer:
    """Seconds per named phase, in the order the phases first ran; a phase timed twice adds up.

    ``with timer.phase("prune"): ...`` times the block; ``timer.seconds`` is then ``{"prune": 12.3}``.
    """

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the wall time of the block to `name` (a block that raises adds nothing)."""
        start = time.perf_counter()
        yield
        self._seconds[name] = self._seconds.get(name, 0.0) + time.perf_counter() - start

    def record(self, name: str, seconds: float) -> None:
        """A phase timed by its own clock (the calibration steps'): `seconds` replaces what `name` held."""
        self._seconds[name] = seconds

    @property
    def seconds(self) -> dict[str, float]:
        """Seconds per phase, a copy."""
        return dict(self._seconds)
