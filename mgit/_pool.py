"""A small thread pool for the streaming commands (commit, import, export, checkout).

``concurrent.futures`` imports ``logging`` (and with it ``traceback``, ``string``, ...): about
4 ms of every command's start-up on this project's machine, where ``zstd`` rebuilds a 45 MB
model in 60 ms. This pool keeps the part of its interface those commands use (``submit``,
``result``, ``cancel``, use as a context manager) on ``threading`` alone; the remote commands,
which import far more, use ``concurrent.futures`` itself.

Workers start with the first job and run until the pool is shut down; a job's exception is
raised again by :meth:`Job.result`.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["Job", "WorkerPool", "default_workers"]


def default_workers() -> int:
    """Worker threads for encoding and decoding: every core (``MGIT_THREADS`` overrides)."""
    env = os.environ.get("MGIT_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, os.cpu_count() or 1)


_PENDING, _RUNNING, _DONE, _CANCELLED = range(4)


class Job:
    """One submitted call: wait for it with :meth:`result`, or :meth:`cancel` it before it runs."""

    __slots__ = ("_fn", "_args", "_kwargs", "_state", "_value", "_error", "_finished", "_lock")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._state = _PENDING
        self._value: Any = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()  # guards _state
        self._finished = threading.Lock()  # held until the job is done or cancelled
        self._finished.acquire()

    @classmethod
    def done_with(cls, value: Any) -> Job:
        """A job that is already finished with ``value`` (to queue a result beside real jobs)."""
        job = cls(_nothing, (), {})
        job._state = _DONE
        job._value = value
        job._finished.release()
        return job

    def _run(self) -> None:
        with self._lock:
            if self._state != _PENDING:
                return
            self._state = _RUNNING
        try:
            self._value = self._fn(*self._args, **self._kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the job
            self._error = exc
        finally:
            self._fn = self._args = self._kwargs = None  # type: ignore[assignment]
            self._state = _DONE
            self._finished.release()

    def cancel(self) -> bool:
        """Stop the job from running if it has not started; True when it will not run."""
        with self._lock:
            if self._state == _PENDING:
                self._state = _CANCELLED
                self._fn = self._args = self._kwargs = None  # type: ignore[assignment]
                self._finished.release()
                return True
            return self._state == _CANCELLED

    def done(self) -> bool:
        """True when the job has finished (or was cancelled): :meth:`result` will not wait."""
        return self._state in (_DONE, _CANCELLED)

    def cancelled(self) -> bool:
        """True when :meth:`cancel` stopped the job."""
        return self._state == _CANCELLED

    def result(self) -> Any:
        """Wait for the job and return its value, or raise its exception.

        Raises:
            RuntimeError: the job was cancelled.
        """
        with self._finished:
            pass
        if self._state == _CANCELLED:
            raise RuntimeError("the job was cancelled")
        if self._error is not None:
            raise self._error
        return self._value


def _nothing() -> None:
    return None


class WorkerPool:
    """``workers`` threads running submitted jobs in submission order."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._queue: deque[Job | None] = deque()  # append/popleft are atomic
        self._queued = threading.Semaphore(0)  # one count per queued item
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job:
        """Queue ``fn(*args, **kwargs)``; the returned :class:`Job` gives its result."""
        if self._closed:
            raise RuntimeError("the pool is shut down")
        if len(self._threads) < self.workers:
            t = threading.Thread(target=self._work, name=f"mgit-{len(self._threads)}", daemon=True)
            t.start()
            self._threads.append(t)
        job = Job(fn, args, kwargs)
        self._put(job)
        return job

    def _put(self, item: Job | None) -> None:
        self._queue.append(item)
        self._queued.release()

    def _work(self) -> None:
        while True:
            self._queued.acquire()
            job = self._queue.popleft()
            if job is None:
                return
            job._run()

    def shutdown(self) -> None:
        """Run every job still queued, then stop the workers and wait for them."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._put(None)
        for t in self._threads:
            t.join()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()
