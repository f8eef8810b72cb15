"""What the tests' servers share: `with Fake(...) as fake:` starts a fake and stops it, and
`free_port()` finds a port for a server of our own."""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class ServesWhileOpen(ABC):
    """A `with` block around a fake's `start()` (which returns the fake) and `stop()`."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick), for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
