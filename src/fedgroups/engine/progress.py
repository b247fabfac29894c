"""A progress bar that follows a shared counter (workers add to it) or is advanced by hand."""

from __future__ import annotations

import sys
import threading
from typing import Any


class Progress:
    """tqdm bar. With ``counter`` (a multiprocessing Value), a thread refreshes the bar from
    it twice a second, so the bar moves even while the main thread is busy reading."""

    def __init__(self, desc: str, *, total: int | None, unit: str, enabled: bool,
                 counter: Any = None) -> None:
        self.counter = counter
        self.bar = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True,
                            file=sys.stderr, mininterval=0.5, smoothing=0.1)
            if counter is not None:
                self._thread = threading.Thread(target=self._follow, daemon=True)
                self._thread.start()

    def _follow(self) -> None:
        while not self._stop.wait(0.5):
            self._sync()

    def _sync(self) -> None:
        if self.bar is not None and self.counter is not None:
            self.bar.update(self.counter.value - self.bar.n)

    def update(self, n: int | None) -> None:
        """Advance by ``n``; ``None`` is a no-op (a counter bar follows its counter)."""
        if self.bar is not None and n is not None:
            self.bar.update(n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.bar is None:
            return
        if exc[0] is None:
            self._sync()
            if self.bar.total is not None and self.bar.n != self.bar.total:
                self.bar.total = self.bar.n  # the estimate was off: end at what was read
                self.bar.refresh()
        self.bar.close()
