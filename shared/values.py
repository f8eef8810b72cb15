"""Value types that both a command and the workspace port speak of."""

from __future__ import annotations

import enum


class DatastoreKind(enum.StrEnum):
    BLOB = "blob"
    ADLS_GEN2 = "adls-gen2"
    FILE = "file"
