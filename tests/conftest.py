"""Shared fixtures: databases (SQLite always, PostgreSQL where reachable), clock, the core."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import date

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from approvals.config import AppConfig, load_config
from bot.wiring import Core, build_core
from tests.json_logs import captured_json_logs
from workspaces.clock import ManualClock
from workspaces.prices import PriceQuote

POSTGRES_URL = os.environ.get(
    "AMLBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(
            POSTGRES_URL, connect_args={"connect_timeout": 3}, poolclass=NullPool
        )
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure means "not here"; the reason is shown
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def postgres_schema_url() -> Iterator[str]:
    """A fresh schema in the test database, dropped afterwards."""
    problem = _postgres_reachable()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable under CI: {problem}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable here: {problem}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'amlbot.sqlite3'}"
    else:
        yield from postgres_schema_url()


@pytest.fixture
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'amlbot.sqlite3'}"


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """What the bot logs meanwhile, as JSON lines (`tests.json_logs`)."""
    with captured_json_logs() as stream:
        yield stream


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def demo_config() -> AppConfig:
    return load_config(None)


@pytest.fixture
def core(database_url: str, clock: ManualClock, demo_config: AppConfig) -> Iterator[Core]:
    """The core on the demo configuration, once on SQLite and once on PostgreSQL."""
    built = build_core(demo_config, database_url=database_url, clock=clock)
    yield built
    built.store.engine.dispose()


@pytest.fixture
def sqlite_core(sqlite_url: str, clock: ManualClock, demo_config: AppConfig) -> Iterator[Core]:
    """The core on SQLite only, for tests about an edge rather than the store."""
    built = build_core(demo_config, database_url=sqlite_url, clock=clock)
    yield built
    built.store.engine.dispose()


@pytest.fixture
def make_core(clock: ManualClock) -> Iterator[Callable[..., Core]]:
    """Build cores on given configs and URLs; their connections are closed afterwards."""
    made: list[Core] = []

    def make(config: AppConfig, database_url: str) -> Core:
        built = build_core(config, database_url=database_url, clock=clock)
        made.append(built)
        return built

    yield make
    for built in made:
        built.store.engine.dispose()


@pytest.fixture(autouse=True)
def _fresh_price_book() -> Iterator[None]:
    """Fetched prices live in a process-wide book; no test sees another's. Each test starts
    with `FETCHED_PRICES`: `westeurope` as a Retail Prices refresh of 2026-01-01 left it (a
    test about other prices installs newer ones, or clears the book). The demo itself is in
    `eastus`, priced by the shipped snapshot; the tests about fetched prices move it to
    `westeurope` (tests/notify/conftest.py)."""
    from workspaces.prices import BOOK

    BOOK.clear()
    BOOK.install(fetched_prices())
    yield
    BOOK.clear()


# Test data: what a refresh fetched for westeurope, dedicated and low priority, in USD per
# node-hour.
FETCHED_PRICES = {
    "Standard_D2s_v3": (0.096, 0.0192),
    "Standard_D4s_v3": (0.192, 0.0384),
    "Standard_DS3_v2": (0.293, 0.0586),
    "Standard_DS11_v2": (0.185, 0.037),
    "Standard_NC6s_v3": (3.06, 0.612),
    "Standard_NC24ads_A100_v4": (3.673, 0.7346),
    "Standard_ND96asr_v4": (27.197, 5.4394),
}


def fetched_prices() -> list[PriceQuote]:
    fetched = date(2026, 1, 1)
    return [
        PriceQuote(sku, "westeurope", low, price, "retail", fetched)
        for sku, prices in FETCHED_PRICES.items()
        for low, price in zip((False, True), prices, strict=True)
    ]
