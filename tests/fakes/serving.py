"""What every fake server shares: `with Fake(...) as fake:` starts it and stops it."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class ServesWhileOpen:
    """A `with` block around a fake's `start()` (which returns the fake) and `stop()`."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
