"""`amlbot`: console, serve, work, check-config, audit export, db upgrade, prices refresh."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from approvals.config import load_config
from approvals.config_errors import ConfigError
from bot import logs
from bot.settings import Settings


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("amlbot")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amlbot", description="Govern Azure ML workspaces from Slack (or a terminal)."
    )
    parser.add_argument("--version", action="version", version=f"amlbot {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    console = sub.add_parser("console", help="talk to the bot in this terminal (no Slack needed)")
    console.add_argument("--config", help="teams and policy YAML (default: the built-in demo)")

    serve = sub.add_parser("serve", help="run the Slack app (Socket Mode unless --http)")
    serve.add_argument("--config", help="teams and policy YAML (default: $AMLBOT_CONFIG or demo)")
    serve.add_argument("--http", action="store_true", help="serve POST /slack/events over HTTP")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument(
        "--health-port",
        type=int,
        help="Socket Mode: serve GET /healthz, /readyz and /metrics on this port "
        "(default: --port; 0: none). HTTP mode serves them on --port",
    )
    serve.add_argument(
        "--work-health-port",
        type=int,
        help="on PostgreSQL, the `amlbot work` children serve /healthz, /readyz and /metrics "
        "from this port on, one port each (default: the port after --port or --health-port; "
        "0: none); serve's /readyz asks each",
    )

    work = sub.add_parser(
        "work", help="run workers alone: claim inbox items, deliver the outbox, run sweeps"
    )
    work.add_argument("--config", help="teams and policy YAML (default: $AMLBOT_CONFIG or demo)")
    work.add_argument(
        "--health-port", type=int, help="serve GET /healthz, /readyz and /metrics on this port"
    )
    work.add_argument("--health-host", default="0.0.0.0", help="the address --health-port binds")

    check = sub.add_parser("check-config", help="validate a configuration file and summarise it")
    check.add_argument("file", nargs="?", help="the YAML file (default: $AMLBOT_CONFIG or demo)")
    check.add_argument(
        "--online", action="store_true", help="also reach each Azure workspace and check roles"
    )

    policy = sub.add_parser("policy", help="the approval policy")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    explain = policy_sub.add_parser(
        "explain", help="which policy rule would decide a sample request, and why"
    )
    explain.add_argument("request", help='e.g. "access request gpu-cluster --for 2h --reason x"')
    explain.add_argument("--as", dest="person", required=True, help="who asks (a key of people)")
    explain.add_argument("--config", help="teams and policy YAML (default: $AMLBOT_CONFIG or demo)")
    explain.add_argument("--workspace", help="the workspace (default: the person's only one)")
    explain.add_argument(
        "--spent", type=float, default=0.0, help="the month's spend so far in USD (default 0)"
    )
    explain.add_argument(
        "--last-grant-ago", help="when the same access was last granted, e.g. 2d (default: never)"
    )

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_sub.add_parser("export", help="write the audit trail out")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--since", help="only events newer than this, e.g. 7d")
    export.add_argument("--workspace", help="only this workspace")
    export.add_argument("--output", "-o", help="file to write (default: standard output)")

    sub.add_parser("db-upgrade", help="apply database migrations and exit")

    prices = sub.add_parser("prices", help="VM prices from the Azure Retail Prices API")
    prices_sub = prices.add_subparsers(dest="prices_command", required=True)
    refresh = prices_sub.add_parser(
        "refresh", help="fetch the configured workspaces' VM prices now and cache them"
    )
    refresh.add_argument("--config", help="teams and policy YAML (default: $AMLBOT_CONFIG or demo)")
    refresh.add_argument(
        "--snapshot",
        metavar="FILE",
        help="also write what was fetched as a price snapshot (the shipped offline fallback "
        "is workspaces/prices_snapshot.json)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            variable = ".".join(str(part) for part in error["loc"])
            # Never echo what may be a secret (a token, a database URL with its password).
            secret = any(word in variable for word in ("TOKEN", "SECRET", "URL"))
            given = "" if secret else f"={error.get('input')!r}"
            print(f"Environment error: {variable}{given}: {error['msg']}", file=sys.stderr)
        return 2
    # JSON lines where a log pipeline reads them (the long-running processes).
    if settings.price_snapshot:
        from workspaces.prices import BOOK, load_snapshot

        try:
            BOOK.use_snapshot(load_snapshot(settings.price_snapshot))
        except ValueError as exc:
            print(f"Environment error: {exc}", file=sys.stderr)
            return 2
    daemon = args.command in ("serve", "work")
    logs.configure(settings.log_level, settings.log_format or ("json" if daemon else "text"))
    # Migrations run at every start; their step-by-step log is noise outside an upgrade.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.command == "console":
        logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        if args.command == "check-config":
            from bot.check_config import check_config

            slack = None
            if args.online and settings.slack_bot_token is not None:
                from slack_sdk import WebClient

                from bot.slack.app import api_url

                token = settings.slack_bot_token.get_secret_value()
                slack = WebClient(token=token, base_url=api_url(settings), timeout=10)
            return check_config(
                args.file or settings.config_path, online=args.online, slack_client=slack
            )
        config_path = getattr(args, "config", None) or settings.config_path
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"Configuration error in {exc.source}:", file=sys.stderr)
        for line in exc.errors:
            print(f"  - {line}", file=sys.stderr)
        return 1
    if args.command == "policy":
        from bot.policy_explain import policy_explain

        return policy_explain(
            config,
            args.person,
            args.request,
            workspace=args.workspace,
            spent=args.spent,
            last_grant_ago=args.last_grant_ago,
        )
    settings.ensure_database_folder()
    if args.command == "db-upgrade":
        from approvals.store import Store

        Store.open(settings.database_url)
        print("database is up to date")
        return 0
    if args.command == "audit":
        from bot.audit_export import export_audit

        return export_audit(settings, args.format, args.since, args.workspace, args.output)
    if args.command == "prices":
        from bot.prices_cli import refresh_prices_command

        return refresh_prices_command(settings, config, args.snapshot)
    if args.command == "serve":
        from bot.serve import serve

        return serve(
            settings,
            config,
            http=args.http,
            host=args.host,
            port=args.port,
            config_path=config_path,
            health_port=args.port if args.health_port is None else args.health_port,
            work_health_port=args.work_health_port,
        )
    if args.command == "work":
        from bot.serve import work

        return work(settings, config, health_port=args.health_port, health_host=args.health_host)
    from bot.console import run_console
    from bot.wiring import build_core

    core = build_core(config, database_url=settings.database_url)
    run_console(core, settings.database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
