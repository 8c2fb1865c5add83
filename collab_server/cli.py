"""The `collab-server` command: serve (and, as they come, the maintenance commands)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import uvicorn

from collab_server.app import create_app
from collab_server.settings import Settings
from persistence import StoreError, migrate

logger = logging.getLogger("collab_server")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collab-server", description="Real-time collaborative code editing server."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="interface to listen on (COLLAB_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (COLLAB_PORT, 8000)")
    serve.add_argument(
        "--store", dest="store_url", help="store URL (COLLAB_STORE_URL, sqlite:///./data/collab.db)"
    )
    migrate = commands.add_parser(
        "migrate", help="apply the database migrations the store lacks (PostgreSQL), then exit"
    )
    migrate.add_argument("--store", dest="store_url", help="store URL (COLLAB_STORE_URL)")
    return parser


def _settings(arguments: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key in ("host", "port", "store_url")
        if (value := getattr(arguments, key, None)) is not None
    }
    return Settings(**overrides)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in ("collab_server", "persistence"):
        logging.getLogger(name).setLevel(level.upper())


def build_server(settings: Settings) -> uvicorn.Server:
    """A uvicorn server for the app, with the WebSocket settings this project relies on."""
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        # Frames up to twice our limit reach the app and get a 4413; beyond that the WebSocket
        # layer itself closes with 1009 before buffering more.
        ws_max_size=2 * settings.max_message_bytes,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_timeout,
        ws_per_message_deflate=settings.ws_deflate,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    return uvicorn.Server(config)


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    logger.info(
        "collab-server on http://%s:%d (store %s)",
        settings.host,
        settings.port,
        settings.store_url,
    )
    build_server(settings).run()


def run_migrations(settings: Settings) -> None:
    """`collab-server migrate`: servers also migrate when they start; this does it ahead."""
    configure_logging(settings.log_level)
    try:
        applied = asyncio.run(migrate(settings.store_url))
    except StoreError as error:
        raise SystemExit(f"collab-server migrate: {error}") from None
    if applied:
        print("applied:", ", ".join(applied))
    else:
        print("nothing to apply: the schema is up to date")


def main(argv: Sequence[str] | None = None) -> None:
    arguments = _parser().parse_args(argv)
    if arguments.command == "serve":
        serve(_settings(arguments))
    elif arguments.command == "migrate":
        run_migrations(_settings(arguments))
