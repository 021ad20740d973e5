"""The collector's background jobs (publisher, dispatcher) as one kind of thread."""

from __future__ import annotations

import threading


class Worker:
    """A daemon thread running `_run` from `start()` until `stop()` sets `_stop`; the
    thread ends at `stop()`, so shutdown waits for the job's last pass."""

    thread_name = "collector-worker"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._interrupt()
            self._thread.join()
            self._thread = None

    def _interrupt(self) -> None:
        """Wake the job from whatever else it waits on (it checks `_stop` after)."""

    def _run(self) -> None:
        raise NotImplementedError
