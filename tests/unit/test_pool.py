"""The streaming commands' thread pool (mgit._pool): results, errors, cancellation, shutdown."""

from __future__ import annotations

import threading
import time

import pytest

from mgit._pool import Job, WorkerPool


def test_results_come_back_for_every_job() -> None:
    with WorkerPool(2) as pool:
        jobs = [pool.submit(pow, i, 2) for i in range(50)]
        assert [j.result() for j in jobs] == [i * i for i in range(50)]
    assert len(pool._threads) == 2


def test_keyword_arguments_are_passed() -> None:
    with WorkerPool(1) as pool:
        assert pool.submit(int, "ff", base=16).result() == 255


def test_a_job_error_is_raised_by_result_and_the_pool_goes_on() -> None:
    with WorkerPool(2) as pool:
        bad = pool.submit(int, "not a number")
        good = pool.submit(len, "four")
        with pytest.raises(ValueError, match="not a number"):
            bad.result()
        assert good.result() == 4


def test_cancel_stops_a_queued_job_but_not_a_running_one() -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocker() -> str:
        started.set()
        release.wait(10)
        return "blocker"

    with WorkerPool(1) as pool:
        first = pool.submit(blocker)
        assert started.wait(10)
        queued = pool.submit(ran.append, "queued")
        assert not first.cancel() and not first.cancelled()
        assert queued.cancel() and queued.cancelled()
        assert queued.cancel()  # idempotent
        release.set()
        assert first.result() == "blocker"
        with pytest.raises(RuntimeError, match="cancelled"):
            queued.result()
    assert ran == []


def test_shutdown_runs_what_is_queued_then_refuses_more() -> None:
    done: list[int] = []
    pool = WorkerPool(2)
    for i in range(20):
        pool.submit(lambda i=i: (time.sleep(0.001), done.append(i)))
    pool.shutdown()
    assert sorted(done) == list(range(20))
    assert not any(t.is_alive() for t in pool._threads)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(len, "x")
    pool.shutdown()  # a second shutdown is harmless


def test_result_waits_for_a_slow_job() -> None:
    with WorkerPool(1) as pool:
        job = pool.submit(lambda: (time.sleep(0.05), "late")[1])
        assert job.result() == "late"


def test_done_with_is_finished_already() -> None:
    job = Job.done_with(42)
    assert job.result() == 42
    assert not job.cancel() and not job.cancelled()


def test_threads_start_only_as_jobs_arrive() -> None:
    pool = WorkerPool(4)
    assert pool._threads == []
    pool.submit(len, "x").result()
    assert len(pool._threads) == 1
    pool.shutdown()
