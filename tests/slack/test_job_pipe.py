"""The pipe that carries jobs from the acking process to the worker processes."""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Lock

import pytest

from bot.slack.workers import JobPipe, receive

# Bigger than a Linux pipe's 64 KiB buffer: only part of it fits, the rest waits.
LARGE = 200_000


def read_until_none(reader: Connection, read_lock: Lock, results: multiprocessing.Queue) -> None:
    while (item := receive(reader, read_lock)) is not None:
        results.put(item)
    results.put(None)


@pytest.mark.timeout(60)
def test_every_job_reaches_exactly_one_worker_even_when_the_pipe_is_full() -> None:
    context = multiprocessing.get_context("spawn")
    pipe = JobPipe(context)
    items = [(n, "x" * (LARGE if n % 7 == 0 else n % 300)) for n in range(60)]

    # No worker reads yet: the large ones overflow the pipe, and `put` must not block.
    for item in items:
        pipe.put(item)

    results: multiprocessing.Queue = context.Queue()
    workers = [
        context.Process(target=read_until_none, args=(pipe.reader, pipe.read_lock, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        pipe.put(None)
    assert pipe.wait_until_written(timeout=30)

    received = []
    finished = 0
    while finished < len(workers):
        item = results.get(timeout=30)
        if item is None:
            finished += 1
        else:
            received.append(item)
    for worker in workers:
        worker.join(timeout=10)

    assert sorted(received) == sorted(items)


def test_a_job_written_in_one_piece_leaves_no_backlog() -> None:
    pipe = JobPipe(multiprocessing.get_context("spawn"))
    pipe.put(("small", 1))

    assert pipe.wait_until_written(timeout=0)
    assert receive(pipe.reader, pipe.read_lock) == ("small", 1)
