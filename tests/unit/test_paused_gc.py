"""paused_gc: the cyclic collector off inside bulk builders, back as it was after."""

from __future__ import annotations

import gc
import threading

import pytest

from mgit._alloc import paused_gc


def test_paused_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():  # nested
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block still runs
    assert gc.isenabled()


def test_restored_after_an_exception() -> None:
    with pytest.raises(KeyError), paused_gc():
        raise KeyError("x")
    assert gc.isenabled()


def test_left_off_when_it_was_off() -> None:
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_concurrent_blocks_keep_it_paused_until_the_last_leaves() -> None:
    inside = threading.Event()
    leave = threading.Event()

    def other() -> None:
        with paused_gc():
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=other)
    with paused_gc():
        t.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other thread's block is still open
    leave.set()
    t.join(10)
    assert gc.isenabled()
