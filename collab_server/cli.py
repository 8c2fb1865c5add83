"""The `collab-server` command: serve (and, as they come, the maintenance commands)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import uvicorn
from pydantic import ValidationError

from collab_server.auth import ALL_ROOMS, Role, mint_token
from collab_server.completion.service import CompletionService
from collab_server.rooms.ids import room_id_problem
from collab_server.settings import Settings
from collab_server.transport.http_protocol import with_header_timeout
from collab_server.transport.ws_protocol import RelayWebSocketProtocol
from persistence import StoreError, migrate, open_store
from persistence.copy import CopiedRoom, copy_rooms

logger = logging.getLogger("collab_server")
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


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
    copy = commands.add_parser(
        "copy",
        help="copy rooms from one store to another (e.g. SQLite to PostgreSQL), then exit; "
        "rooms the target has already are skipped. Stop the servers of both stores first.",
    )
    copy.add_argument("--from", dest="source", required=True, help="the store to copy from (URL)")
    copy.add_argument("--to", dest="target", required=True, help="the store to copy into (URL)")
    copy.add_argument("rooms", nargs="*", help="room ids to copy (default: every room)")
    token = commands.add_parser(
        "token", help="print an access token signed with COLLAB_AUTH_SECRET, then exit"
    )
    token.add_argument(
        "--room",
        default=ALL_ROOMS,
        help=f"the room it opens ({ALL_ROOMS!r}, the default: every room)",
    )
    token.add_argument(
        "--role",
        choices=[role.label for role in Role],
        default=Role.EDITOR.label,
        help="viewer reads, editor also writes and creates rooms, admin also deletes (editor)",
    )
    token.add_argument("--ttl", type=float, help="seconds until it expires (default: never)")
    token.add_argument(
        "--user", help="who holds it (the `sub` claim): their edits are attributed to them"
    )
    token.add_argument("--name", help="the holder's name as history and blame show it")
    return parser


def _settings(arguments: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key in ("host", "port", "store_url")
        if (value := getattr(arguments, key, None)) is not None
    }
    return Settings(**overrides)


TEXT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line, for log collectors: time, level, logger, message (and error)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    json_lines = settings.log_format == "json"
    handler.setFormatter(JsonLogFormatter() if json_lines else logging.Formatter(TEXT_LOG_FORMAT))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    for name in ("collab_server", "persistence"):
        logging.getLogger(name).setLevel(settings.log_level.upper())


def build_server(settings: Settings, completion: CompletionService | None = None) -> uvicorn.Server:
    """A uvicorn server for the app, with the WebSocket settings this project relies on."""
    from collab_server.app import create_app  # not at the top: see `serve`

    config = uvicorn.Config(
        create_app(settings, completion),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=with_header_timeout(settings.header_timeout_seconds),
        ws=RelayWebSocketProtocol,  # websockets-sansio, writing frames built once per room
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
    configure_logging(settings)
    logger.info(
        "collab-server on http://%s:%d (store %s)",
        settings.host,
        settings.port,
        settings.store_url,
    )
    if settings.auth_secret is None and settings.host not in LOOPBACK_HOSTS:
        logger.warning(
            "access control is off (COLLAB_AUTH_SECRET unset): anyone who can reach %s may read, "
            "edit and delete every room",
            settings.host,
        )
    # The completion workers start first and warm jedi up (about 1.5 s each) while the app is
    # imported (about 0.5 s, hence its import in `build_server`), the store opened and the
    # rooms' services started: Python completion answers in full that much sooner.
    completion = CompletionService(settings)
    completion.start_workers()
    build_server(settings, completion).run()


def copy_stores(source_url: str, target_url: str, room_ids: list[str]) -> None:
    """`collab-server copy`: one line per room, then a total."""
    if source_url == target_url:
        raise SystemExit("collab-server copy: --from and --to name the same store")

    async def run() -> list[CopiedRoom]:
        source, target = open_store(source_url), open_store(target_url)
        await source.open()
        try:
            await target.open()
            try:
                return await copy_rooms(source, target, room_ids or None)
            finally:
                await target.close()
        finally:
            await source.close()

    try:
        results = asyncio.run(run())
    except StoreError as error:
        raise SystemExit(f"collab-server copy: {error}") from None
    for result in results:
        if result.copied:
            print(f"{result.room_id}: {result.updates} updates, {result.size_bytes} bytes")
        else:
            print(f"{result.room_id}: skipped, the target has a room with this id")
    copied = sum(result.copied for result in results)
    print(f"copied {copied} of {len(results)} rooms")


def print_token(settings: Settings, arguments: argparse.Namespace) -> None:
    """`collab-server token`: what a team's own backend would mint, for hand-outs and scripts."""
    room = arguments.room
    if settings.auth_secret is None:
        raise SystemExit("collab-server token: set COLLAB_AUTH_SECRET first")
    problem = None if room == ALL_ROOMS else room_id_problem(room)
    if problem is not None:
        raise SystemExit(f"collab-server token: {room!r} is not a room id: {problem}")
    token = mint_token(
        settings.auth_secret.get_secret_value(),
        room,
        Role.parse(arguments.role),
        arguments.ttl,
        user=arguments.user,
        name=arguments.name,
    )
    print(token)


def run_migrations(settings: Settings) -> None:
    """`collab-server migrate`: servers also migrate when they start; this does it ahead."""
    configure_logging(settings)
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
    try:
        settings = _settings(arguments)
    except ValidationError as error:
        raise SystemExit(f"collab-server: bad settings\n{_settings_errors(error)}") from None
    if arguments.command == "serve":
        serve(settings)
    elif arguments.command == "migrate":
        run_migrations(settings)
    elif arguments.command == "copy":
        copy_stores(arguments.source, arguments.target, arguments.rooms)
    elif arguments.command == "token":
        print_token(settings, arguments)


def _settings_errors(error: ValidationError) -> str:
    """One line per bad setting, named as the environment spells it."""
    lines = []
    for item in error.errors(include_url=False):
        name = "COLLAB_" + "_".join(str(part) for part in item["loc"]).upper()
        lines.append(f"  {name}: {item['msg']}")
    return "\n".join(lines)
