"""The pipe that carries jobs from the acking process to a worker process."""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection

import pytest

from bot.slack.workers import JobPipe, receive

# Bigger than a Linux pipe's 64 KiB buffer: only part of it fits, the rest waits.
LARGE = 200_000


def read_until_none(reader: Connection, results: multiprocessing.Queue) -> None:
    while (item := receive(reader)) is not None:
        results.put(item)
    results.put(None)


@pytest.mark.timeout(60)
def test_every_job_arrives_once_and_in_order_even_when_the_pipe_is_full() -> None:
    context = multiprocessing.get_context("spawn")
    pipe = JobPipe(context)
    items = [(n, "x" * (LARGE if n % 7 == 0 else n % 300)) for n in range(60)]

    # No worker reads yet: the large ones overflow the pipe, and `put` must not block.
    for item in items:
        pipe.put(item)
    pipe.put(None)

    results: multiprocessing.Queue = context.Queue()
    worker = context.Process(target=read_until_none, args=(pipe.reader, results))
    worker.start()
    assert pipe.wait_until_written(timeout=30)
    received = []
    while (item := results.get(timeout=30)) is not None:
        received.append(item)
    worker.join(timeout=10)

    assert received == items


def test_a_job_written_in_one_piece_leaves_no_backlog() -> None:
    pipe = JobPipe(multiprocessing.get_context("spawn"))
    pipe.put(("small", 1))

    assert pipe.wait_until_written(timeout=0)
    assert receive(pipe.reader) == ("small", 1)


@pytest.mark.timeout(30)
def test_the_pipe_of_a_dead_worker_drops_what_waits_and_takes_no_more() -> None:
    pipe = JobPipe(multiprocessing.get_context("spawn"))
    pipe.put(("big", "x" * LARGE))  # most of it waits in the backlog: nobody reads

    pipe.close()
    pipe.put(("after", 1))

    assert pipe.wait_until_written(timeout=0)
