"""What the core answers the person who typed a command; edges decide how to show it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Reply(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    ok: bool = True
    # True: others should see it (posted to the channel); False: only the person.
    public: bool = False
    # The request this reply is about, so an edge can thread follow-ups under it.
    request_id: int | None = None
    # Set when an unexpected error was logged; shown so support can find the trace.
    error_id: str | None = None
    # The kind of command answered (e.g. "compute list"), for the metrics; None when the
    # typed text did not parse. Set by `AmlService.handle_text`.
    command: str | None = None
