"""Every setting of the server, read from `COLLAB_*` environment variables (the only env reader)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from collab_server.auth import MIN_SECRET_LENGTH
from collab_server.protocol.update import UpdateLimits

LogLevel = Literal["debug", "info", "warning", "error"]


class Settings(BaseSettings):
    """Server configuration; build one in `__main__` or a test fixture and pass it in."""

    # An empty variable means unset, as docker compose passes `${VAR:-}`.
    model_config = SettingsConfigDict(
        env_prefix="COLLAB_", frozen=True, extra="ignore", env_ignore_empty=True
    )

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on (0 picks one).")
    store_url: str = Field(
        "sqlite:///./data/collab.db",
        description="Where rooms are stored: sqlite:///path, postgresql://..., or memory://.",
    )
    store_outage_buffer_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Updates a PostgreSQL store keeps in memory while the database is unreachable"
        " (loaded rooms keep editing); beyond it new updates are refused with close code 4503.",
    )
    log_level: LogLevel = Field("info", description="Log level of the server's own loggers.")
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or as one JSON object each (for log collectors)."
    )
    max_message_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest WebSocket message a client may send."
    )
    update_max_depth: int = Field(
        128,
        ge=8,
        le=1024,
        description="Deepest nesting of values (lib0 any, JSON) and of shared types in a document "
        "that an update may make; deeper updates are refused with 4422 (yrs recurses over both).",
    )
    update_max_structs: int = Field(
        200_000, ge=1000, description="Most items (structs) one update may carry."
    )
    update_max_delete_ranges: int = Field(
        200_000, ge=1000, description="Most delete ranges one update may carry."
    )
    update_max_unmerged_run: int = Field(
        4096,
        ge=64,
        description="Most consecutive one-client items in an update that yrs merges into one "
        "(its cost is quadratic in them; Yjs always sends them merged).",
    )
    room_max_pending_items: int = Field(
        1000,
        ge=0,
        description="Items a room may hold that wait for updates nobody sent yet; an update that "
        "would leave more waiting is refused with 4422.",
    )
    client_messages_per_second: float = Field(
        1000.0,
        ge=0,
        description="Messages one WebSocket client may send a second (bursts of one second's "
        "worth); a faster client is read more slowly, never closed. 0: no limit.",
    )
    peer_queue_messages: int = Field(
        4096,
        ge=16,
        description="Messages queued for one slow client before it is closed (it then resyncs).",
    )
    max_connections: int = Field(
        0,
        ge=0,
        description="WebSocket connections one process serves at once; more are closed with 1013 "
        "(the client retries later). 0: the open-file limit less 256 descriptors kept for the "
        "store, REST and new clients.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Time a client has to send a request's headers (a WebSocket handshake's "
        "too), from connecting or from the request's first byte; slower ones are closed.",
    )
    max_rooms_loaded: int = Field(
        10_000,
        ge=1,
        description="Rooms one process holds in memory; opening another is refused (HTTP 503, "
        "WebSocket 1013) until some go idle.",
    )
    room_openings_per_minute: float = Field(
        600,
        ge=0,
        description="Rooms one client address may bring into memory or create a minute (a "
        "bucket of this many, refilled evenly); more get HTTP 429 or WebSocket 1013. 0: no "
        "limit.",
    )
    room_max_connections: int = Field(
        1000, ge=1, description="WebSocket connections one room serves at once; more get 1013."
    )
    peer_queue_bytes: int = Field(
        16 * 1024 * 1024,
        ge=64 * 1024,
        description="Bytes queued for one slow client before it is closed (it then resyncs); one "
        "message larger than this (a big document's first sync) is still sent alone.",
    )
    room_idle_seconds: float = Field(
        30.0, ge=0, description="How long a room with no clients stays in memory."
    )
    full_gc_seconds: float = Field(
        300.0,
        ge=0,
        description="Python's full garbage collections run this often on a timer instead of "
        "whenever long-lived objects grew by a quarter (each holds the event loop, up to "
        "hundreds of ms with thousands of clients); 0: Python's default.",
    )
    version_every_seconds: float = Field(
        600.0,
        ge=0,
        description="While people edit a room, an automatic version at most this often "
        "(seconds after the first edit since the last version); 0: none while editing.",
    )
    versions_kept: int = Field(
        200, ge=0, description="Automatic versions kept per room (named ones are kept always)."
    )
    versions_max_age_days: float = Field(
        30.0, ge=0, description="Automatic versions older than this are removed; 0: no limit."
    )
    named_versions_max: int = Field(
        1000,
        ge=0,
        description="Named versions a room may keep: saving one more answers 409 until some "
        "are deleted; 0: no limit.",
    )
    compact_after_updates: int = Field(
        2000, ge=1, description="Log rows after which a room's log is merged into a snapshot."
    )
    compact_after_bytes: int = Field(
        4 * 1024 * 1024, ge=1, description="Log bytes after which a room's log is compacted."
    )
    ws_ping_interval: float = Field(
        20.0, gt=0, description="Seconds between WebSocket pings that detect dead connections."
    )
    ws_ping_timeout: float = Field(
        20.0, gt=0, description="Seconds without a pong after which a connection is dropped."
    )
    ws_deflate: bool = Field(
        False, description="Offer permessage-deflate (costs CPU on keystroke-sized frames)."
    )
    redis_url: str | None = Field(
        None,
        description="Redis that relays rooms between server processes sharing one PostgreSQL "
        "store (e.g. redis://127.0.0.1:6379/0); unset: this process is alone.",
    )
    cluster_check_seconds: float = Field(
        2.0,
        gt=0,
        description="With Redis: how often a process asks the store for the newest update of its "
        "loaded rooms, to catch up on updates whose message never came (their process died).",
    )
    public_url: str | None = Field(
        None,
        description="Base URL clients use to reach the server (e.g. https://collab.example.com); "
        "by default taken from each request.",
    )
    cors_origins: str | None = Field(
        None,
        description="Comma-separated origins (e.g. http://localhost:5173) whose pages may call "
        "the REST API from a browser, or * for any; unset: only pages this server serves.",
    )
    auth_secret: SecretStr | None = Field(
        None,
        description="Secret (at least 32 characters) that signs access tokens; when set, every "
        "room and API call needs a token (`collab-server token`). Unset: anyone who can reach "
        "the server may read, edit and delete every room.",
    )
    completion_workers: int = Field(
        2,
        ge=0,
        le=64,
        description="Worker processes that compute code completion (jedi for Python, the generic "
        "provider for the rest), at a lower CPU priority than the server; about 125 MB each. "
        "0 turns completion off (the endpoint answers 503).",
    )
    completion_cache_dir: str = Field(
        "~/.cache/collab-server/jedi",
        description="Where completion workers keep jedi's cache across restarts (one locked "
        "slot directory per worker), so Python completion answers in full soon after a start; "
        "empty: a temporary directory per worker, removed when it exits.",
    )
    completion_queue: int = Field(
        8,
        ge=1,
        description="Completion requests admitted at once (running or waiting for a worker); "
        "more are refused at once with 503 and a JSON body.",
    )
    completion_deadline_ms: int = Field(
        500,
        ge=10,
        le=60_000,
        description="Time a completion request may take; what the providers have not delivered "
        "by then is left out and the answer is marked partial.",
    )
    completion_llm_url: str | None = Field(
        None,
        description="Base URL of an OpenAI-compatible API (e.g. http://127.0.0.1:11434/v1) whose "
        "chat/completions offer one multi-token continuation per request; None turns it off.",
    )
    completion_llm_model: str = Field(
        "gpt-4o-mini", description="Model name sent to the AI completion endpoint."
    )
    completion_llm_key: SecretStr | None = Field(
        None, description="Bearer token for the AI completion endpoint, if it needs one."
    )
    completion_llm_timeout_ms: int = Field(
        400,
        ge=1,
        description="Longest wait for the AI endpoint (never past the request's deadline); a "
        "late or failed answer leaves the local providers' items.",
    )

    @field_validator("auth_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_LENGTH} characters; make one with: python3 -c "
                "'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return secret

    @property
    def update_limits(self) -> UpdateLimits:
        return UpdateLimits(
            max_structs=self.update_max_structs,
            max_delete_ranges=self.update_max_delete_ranges,
            max_depth=self.update_max_depth,
            max_unmerged_run=self.update_max_unmerged_run,
            max_pending_items=self.room_max_pending_items,
        )

    @property
    def cors_origin_list(self) -> list[str]:
        origins = (self.cors_origins or "").split(",")
        return [origin.strip() for origin in origins if origin.strip()]
