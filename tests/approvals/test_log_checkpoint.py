"""SQLite's write-ahead log is copied into the database by a worker's chore, never by the
commits of the writer engines (`make_writer_engine`): those run inside a write turn the
acks' next batch waits for, and a checkpoint there cost the acks' p99 on SQLite about
1.5 ms at 10 in flight (bench/ack_history.md, 2026-12-05)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from approvals.store import checkpoint_log, make_engine, make_writer_engine

ROW = b"x" * 16_384
# SQLite's automatic checkpoint runs once the log passes 1,000 pages of 4 KiB.
ROWS = 400  # about 1,600 pages


def test_the_writers_commits_leave_the_log_to_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    plain = make_engine(f"sqlite:///{path}")
    writer = make_writer_engine(f"sqlite:///{path}")
    try:
        with plain.begin() as connection:
            connection.execute(text("CREATE TABLE kept (body BLOB)"))
        before = path.stat().st_size
        for _ in range(ROWS):  # a commit each, as the acks' batches are
            with writer.begin() as connection:
                connection.execute(text("INSERT INTO kept VALUES (:body)"), {"body": ROW})

        # Past the automatic checkpoint's 1,000 pages, and none of it in the database yet.
        assert Path(f"{path}-wal").stat().st_size > ROWS * len(ROW)
        assert path.stat().st_size == before

        pages, copied = checkpoint_log(plain) or (0, -1)
        assert pages > 1_000
        assert copied == pages
        assert path.stat().st_size > ROWS * len(ROW)
        with plain.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM kept")) == ROWS
    finally:
        writer.dispose()
        plain.dispose()


def test_there_is_no_log_to_checkpoint_in_memory() -> None:
    engine = make_engine("sqlite://")
    assert checkpoint_log(engine) is None
    engine.dispose()
