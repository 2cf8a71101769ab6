"""The children's descriptors watched through one epoll (engine.fdwatch),
with real pipes."""

from __future__ import annotations

import asyncio
import os
import select

import pytest

from procctl.engine import fdwatch


def test_a_readable_descriptor_calls_its_handler_until_it_is_removed() -> None:
    """1. A pipe with bytes in it calls its handler on the loop (level-triggered:
    again while they are unread). 2. Removed, it is no longer looked at.
    3. Two loops have a watch each."""

    async def scenario() -> tuple[list[bytes], int]:
        loop = asyncio.get_running_loop()
        watch = fdwatch.watch_of(loop)
        read_end, write_end = os.pipe()
        got: list[bytes] = []
        called = 0
        two = asyncio.Event()

        def on_readable(events: int) -> None:
            nonlocal called
            called += 1
            if called == 2:
                got.append(os.read(read_end, 100))
                watch.remove(read_end)
                two.set()

        try:
            watch.add(read_end, on_readable)
            assert fdwatch.watch_of(loop) is watch and len(watch) == 1
            os.write(write_end, b"hello")
            await asyncio.wait_for(two.wait(), 30)
            os.write(write_end, b"more")
            for _ in range(5):
                await asyncio.sleep(0)
            return got, called
        finally:
            os.close(read_end)
            os.close(write_end)

    first = asyncio.run(scenario())
    assert first == ([b"hello"], 2)
    assert asyncio.run(scenario()) == first


def test_a_watch_that_watches_nothing_closes_its_epoll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once it has watched nothing for IDLE_CLOSE_S its epoll is closed and
    taken off the loop; the next descriptor gets a new watch."""
    monkeypatch.setattr(fdwatch, "IDLE_CLOSE_S", 0.0)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        read_end, write_end = os.pipe()
        try:
            watch = fdwatch.watch_of(loop)
            epoll_fd = watch._epoll.fileno()  # type: ignore[union-attr]
            watch.add(read_end, lambda _events: None)
            watch.remove(read_end)
            for _ in range(5):
                await asyncio.sleep(0)
            assert watch.closed
            assert not loop.remove_reader(epoll_fd)  # (no longer watched by the loop)
            fresh = fdwatch.watch_of(loop)
            assert fresh is not watch and not fresh.closed
            seen = asyncio.Event()
            fresh.add(read_end, lambda _events: seen.set())
            os.write(write_end, b"x")
            await asyncio.wait_for(seen.wait(), 30)
            fresh.remove(read_end)
        finally:
            os.close(read_end)
            os.close(write_end)

    asyncio.run(scenario())


def test_a_descriptor_removed_by_another_handler_is_not_called_and_errors_reach_the_loop() -> None:
    """1. Two pipes ready together: the first handler removes the second, whose
    handler is then not called. 2. A handler that raises goes to the loop's
    exception handler, and the watch goes on calling the others."""

    async def scenario() -> tuple[list[str], list[str]]:
        loop = asyncio.get_running_loop()
        errors: list[str] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(repr(context.get("exception"))))
        watch = fdwatch.watch_of(loop)
        pipes = [os.pipe() for _ in range(3)]
        calls: list[str] = []
        done = asyncio.Event()
        ends = {read_end: name for (read_end, _), name in zip(pipes, "abc")}

        def handler(read_end: int) -> None:
            name = ends[read_end]
            calls.append(name)
            os.read(read_end, 10)
            watch.remove(read_end)
            for other in ends:
                if other != read_end and ends[other] != "c":
                    watch.remove(other)
            if name == "c":
                done.set()
                return
            raise RuntimeError(f"from {name}")

        try:
            for read_end in ends:
                watch.add(read_end, lambda _events, fd=read_end: handler(fd))
            for _, write_end in pipes:
                os.write(write_end, b"x")
            await asyncio.wait_for(done.wait(), 30)
            return calls, errors
        finally:
            for read_end, write_end in pipes:
                watch.remove(read_end)
                os.close(read_end)
                os.close(write_end)

    calls, errors = asyncio.run(scenario())
    # One of a and b ran (and removed the other), and c ran as well.
    assert sorted(calls) in (["a", "c"], ["b", "c"])
    assert errors == [f"RuntimeError('from {calls[0] if calls[0] != 'c' else calls[1]}')"]


def test_a_pipe_at_its_end_is_a_hang_up_alone_and_one_with_bytes_left_is_readable_too() -> None:
    """What `pipes.Output` relies on to close a pipe without reading it: a
    pipe whose writers are gone is reported as EPOLLHUP alone when it is
    empty, and with EPOLLIN as long as bytes are left in it."""

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        watch = fdwatch.watch_of(loop)
        seen: list[int] = []
        done = asyncio.Event()
        read_end, write_end = os.pipe()

        def on_event(events: int) -> None:
            seen.append(events)
            if events & select.EPOLLIN:
                os.read(read_end, 100)
            else:
                watch.remove(read_end)
                done.set()

        try:
            os.write(write_end, b"last words")
            os.close(write_end)
            watch.add(read_end, on_event)
            await asyncio.wait_for(done.wait(), 30)
            return seen
        finally:
            os.close(read_end)

    assert asyncio.run(scenario()) == [select.EPOLLIN | select.EPOLLHUP, select.EPOLLHUP]
