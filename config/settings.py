"""Typed, validated configuration from ``HELDAR_*`` environment variables.

Every field below is one environment variable: the field ``api_port`` is ``HELDAR_API_PORT``.
Empty values count as unset. Booleans accept 1/true/yes/on and 0/false/no/off.
``load_settings()`` turns a bad value into a ``SettingsError`` whose message names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "HELDAR_"

# --- upstream compatibility (metrics/compat area): upstream heldar's spelling of the same setting -----------
# Accepted as well as ours (ours wins when both are set); same meaning and unit. Upstream settings with a
# different unit (HELDAR_PLAYBACK_SESSION_TTL_MINUTES) or without an equivalent here are not aliased.
UPSTREAM_ALIASES: dict[str, str] = {
    "frame_ticket_ttl_s": "HELDAR_FRAME_TICKET_TTL_SECS",
    "ai_default_fps": "HELDAR_DEFAULT_AI_FPS",
    "ai_default_width": "HELDAR_DEFAULT_AI_WIDTH",
    "event_retention_days": "HELDAR_AUDIT_RETENTION_DAYS",
    "media_job_slots": "HELDAR_MEDIA_JOB_CONCURRENCY",
    "webhook_interval_s": "HELDAR_NOTIFIER_INTERVAL_S",
}

# Upstream names of a setting heldar has in another unit: not read (a silent unit change would be worse), but the
# unknown-variable warning at start names the setting to use instead.
UPSTREAM_OTHER_UNIT: dict[str, str] = {
    "HELDAR_PLAYBACK_SESSION_TTL_MINUTES": "HELDAR_PLAYBACK_TTL_S (in seconds)",
}


def _also(field: str) -> AliasChoices:
    """Read ``field`` from our variable, else from upstream's spelling (first set one wins)."""
    return AliasChoices(f"{ENV_PREFIX}{field.upper()}", UPSTREAM_ALIASES[field])


# Values of these are never repeated in an error message.
SECRET_FIELDS = frozenset(
    {"database_url", "bootstrap_admin_password", "frame_ticket_secret", "mqtt_url", "secret_key", "secret_key_previous"}
)


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        extra="ignore",
        validate_default=True,
        validate_by_name=True,  # Settings(field=...) by field name, as actors rebuild it from model_dump()
        validate_by_alias=True,
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(Path("./data"), description="Root for the embedded database and recordings.")
    recordings_dir: Path | None = Field(
        None, description="Segment root; <recordings>/<camera>/ per camera. Default: <data_dir>/recordings."
    )

    # --- database ------------------------------------------------------------------------
    database_url: str | None = Field(
        None,
        description="postgresql:// URL. Unset: an embedded PostgreSQL (pgserver) starts under <data_dir>/pg.",
    )
    db_max_connections: int = Field(16, ge=2, le=256, description="Pool size of each API process.")
    db_actor_connections: int = Field(
        8,
        ge=6,
        le=256,
        description="Connections all actors together may hold: supervisor 2, retention 2, ingest "
        "(HELDAR_AI_INGEST_CONNECTIONS), the rest shared by the recording writers; camera actors hold none.",
    )
    db_writers: int = Field(
        2, ge=1, le=64, description="recording-writer actors that write segments, status and events for cameras."
    )
    db_connect_timeout_s: float = Field(5.0, gt=0, le=120, description="Connect / acquire timeout.")

    # --- ray -----------------------------------------------------------------------------
    ray_address: str | None = Field(
        None, description="Ray cluster to join (e.g. ray://head:10001 or auto). Unset: a local Ray starts."
    )
    ray_namespace: str = Field("heldar", min_length=1, max_length=64, description="Ray namespace of actors.")
    ray_dashboard: bool = Field(True, description="Start the Ray dashboard with a local Ray.")
    ray_dashboard_host: str = Field("127.0.0.1", description="Bind address of the local Ray dashboard.")

    # --- api -----------------------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="API bind address.")
    api_port: int = Field(8000, ge=0, le=65535, description="API port (0 picks a free port).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level: DEBUG, INFO, WARNING or ERROR (any case)."
    )
    ffmpeg: str | None = Field(None, description="ffmpeg binary. Unset: the static build from imageio-ffmpeg.")

    # --- cli: logging (one set-up for the CLI, the API and every actor; heldar/logging_setup.py) -----------
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text or json (one object a line, camera_id and other fields as keys)."
    )
    access_log: bool = Field(False, description="Log every HTTP request (uvicorn's access log) in HELDAR_LOG_FORMAT.")

    # --- serve: readiness and stopping (heldar serve) ------------------------------------
    readyz_min_recording_percent: float = Field(
        0,
        ge=0,
        le=100,
        description="/readyz is 503 (insufficient_recorders) while fewer than this percent of the cameras "
        "that should record are recording; 0 = no quorum.",
    )
    shutdown_timeout_s: float = Field(
        5,
        ge=0.5,
        le=300,
        description="On SIGTERM, seconds open HTTP requests get to finish before they are cancelled "
        "(event streams end at once).",
    )

    # --- auth ----------------------------------------------------------------------------
    auth_enabled: bool = Field(True, description="Require credentials on /api/v1 (off only for demos).")
    session_ttl_hours: float = Field(12, gt=0, le=24 * 365, description="Session lifetime.")
    session_idle_timeout_min: float = Field(0, ge=0, description="Idle cut-off for sessions; 0 = none.")
    auth_cookie_secure: bool | None = Field(
        None,
        description="Mark the session cookie Secure; unset: Secure whenever the request came over HTTPS "
        "(directly or per a trusted proxy's X-Forwarded-Proto).",
    )
    login_max_failures: int = Field(5, ge=0, le=1000, description="Failures before lockout; 0 = never.")
    login_lockout_min: float = Field(15, ge=0, le=24 * 60, description="Lockout length in minutes.")
    bootstrap_admin_user: str | None = Field(None, description="First admin's username (empty user table).")
    bootstrap_admin_password: str | None = Field(
        None, description="First admin's password (8+ chars); unset: one is generated and printed once."
    )
    password_hash_time_cost: int = Field(
        3, ge=1, le=20, description="argon2id passes for password hashes (lower only in tests)."
    )
    password_hash_memory_kib: int = Field(
        65536, ge=8, le=4 * 1024 * 1024, description="argon2id memory per hash in KiB (lower only in tests)."
    )
    password_hash_parallelism: int = Field(4, ge=1, le=64, description="argon2id lanes per password hash.")

    # --- recording -----------------------------------------------------------------------
    recorder_enabled: bool = Field(True, description="Master switch for recording.")
    default_segment_seconds: int = Field(60, ge=2, le=3600, description="Segment length for new cameras.")
    default_retention_hours: int = Field(24, ge=1, le=43800, description="Retention for new cameras.")
    default_record_audio: bool = Field(False, description="Record audio on new cameras.")
    rtsp_timeout_s: float = Field(5.0, ge=1, le=60, description="ffmpeg socket I/O timeout on camera input.")
    indexer_interval_s: float = Field(2.0, ge=0.5, le=300, description="How often a camera indexes segments.")
    gap_threshold_s: float = Field(3.0, ge=1, le=3600, description="Hole between segments that is a gap.")
    health_interval_s: float = Field(5.0, ge=1, le=300, description="Supervisor health-check cadence.")
    health_timeout_s: float = Field(5.0, ge=0.5, le=120, description="A camera actor answering slower is hung.")
    health_failures_to_restart: int = Field(
        3, ge=1, le=100, description="Consecutive failed health checks before a camera actor is replaced."
    )
    not_recording_grace_s: float = Field(
        15,
        ge=1,
        le=3600,
        description="A desired camera not recording for its segment length plus this gets an event and a cause.",
    )
    supervisor_standby_poll_s: float = Field(
        2.0, ge=0.2, le=60, description="How often a standby supervisor tries to take over the database's lock."
    )
    recorder_max_pending: int = Field(
        2000,
        ge=10,
        le=1_000_000,
        description="Events and status changes a camera keeps while the database is "
        "unreachable; past it the oldest are dropped and counted (segments are re-read from disk).",
    )

    # --- recording density (issue 18): several cameras' recorders in one actor process -------------
    cameras_per_recorder_host: int = Field(
        1,
        ge=1,
        le=256,
        description="Cameras whose recorders share one Ray actor process (recorder host); 1 = one camera actor "
        "per camera. Each camera keeps its own ffmpeg, supervision, restarts, health and status row.",
    )

    # --- recording schedules ---------------------------------------------------------------
    schedule_timezone: str | None = Field(
        None,
        description="IANA zone (e.g. Europe/Berlin) new recording schedules are read in when they name none; "
        "unset: the API host's zone (TZ, else /etc/localtime). Stored on each schedule.",
    )

    # --- storage and retention (storage area) ---------------------------------------------
    retention_interval_s: float = Field(
        300, ge=1, le=86400, description="Retention sweep cadence; sweeps run every max(this, 30) seconds."
    )
    max_recordings_gb: float = Field(
        20, gt=0, le=1_000_000, description="Global cap on footage (GB, 1024^3); PUT /system/retention overrides it."
    )
    min_free_disk_gb: float = Field(
        5, ge=0, le=1_000_000, description="Free space kept on the recordings filesystem (GB); 0 disables the floor."
    )
    detection_retention_hours: float = Field(
        168, gt=0, le=24 * 3650, description="Detections, outbox, fan-out claims and zone events are kept this long."
    )
    event_retention_days: float = Field(
        365,
        gt=0,
        le=3650,
        validation_alias=_also("event_retention_days"),
        description="Events, audit rows, webhook deliveries and resolved gaps are kept this long.",
    )
    retention_orphan_interval_s: float = Field(
        3600, ge=30, le=7 * 86400, description="How often a sweep also diffs files against rows (orphans, vanished)."
    )

    # --- media plane: clips, snapshots, playback (media area) ------------------------------
    clips_dir: Path | None = Field(
        None, description="Exported clips (served at /media/clips). Default: <data_dir>/clips."
    )
    media_job_slots: int = Field(
        3,
        ge=1,
        le=64,
        validation_alias=_also("media_job_slots"),
        description="Clip exports and snapshots running at once per API process; a request waits 10 s "
        "for a slot, then gets 503 + Retry-After.",
    )
    clip_max_seconds: int = Field(3600, ge=1, le=86400, description="Longest clip export window.")
    clip_expiry_hours: float = Field(
        48, gt=0, le=24 * 3650, description="Exported clips are deleted by the retention sweep after this long."
    )
    playback_ttl_s: float = Field(
        600, ge=10, le=86400, description="A playback session (and its read locks) lives this long after creation."
    )
    max_playback_seconds: int = Field(21600, ge=1, le=43200, description="Longest playback session window.")
    live_view_enabled: bool = Field(
        False, description="Recorders also write a live HLS playlist (a second output of the same stream copy)."
    )
    live_dir: Path | None = Field(None, description="Live HLS playlists, <live>/<camera>/. Default: <data_dir>/live.")

    # --- ANR back-fill -------------------------------------------------------------------
    anr_enabled: bool = Field(False, description="Back-fill recording gaps from camera storage.")
    anr_interval_s: float = Field(300, ge=1, le=86400, description="ANR sweep cadence per camera.")
    anr_max_gap_hours: float = Field(24, gt=0, le=24 * 30, description="Only gaps younger than this.")
    anr_max_attempts: int = Field(3, ge=1, le=100, description="Attempts before a gap is failed.")
    anr_max_concurrent: int = Field(2, ge=1, le=256, description="Fills running at once, cluster-wide.")

    # --- perception ----------------------------------------------------------------------
    ai_enabled: bool = Field(True, description="Run sampler and detector actors for enabled AI tasks.")
    ai_max_total_fps: float = Field(
        40, ge=0, le=10000, description="Global decode budget (fps at full width) shared by all samplers."
    )
    ai_default_fps: float = Field(
        5, ge=0.1, le=30, validation_alias=_also("ai_default_fps"), description="fps of a new AI task that names none."
    )
    ai_default_width: int = Field(
        1280, ge=160, le=3840, validation_alias=_also("ai_default_width"),
        description="Width of a new AI task that names none.",
    )  # fmt: skip
    ai_detector_workers: int = Field(2, ge=1, le=256, description="DetectorWorker actors in the pool.")
    ai_detector_gpus: float | None = Field(
        None, ge=0, le=8, description="GPUs per detector; unset: 1 when the cluster has GPUs, else 0 (CPU)."
    )
    ai_max_in_flight: int = Field(2, ge=1, le=64, description="Frames one sampler may have at detectors.")
    ai_max_pending: int = Field(
        1, ge=0, le=64, description="Frames a sampler holds while detectors are busy; older ones are dropped."
    )
    ai_analyzers: str | None = Field(
        None, description="Extra analyzers, comma separated name=module:factory (task_type is the name)."
    )
    detection_consumers: str = Field(
        "heldar.zones.engine:zone_consumer",
        description="Detection consumers run by the ingest actor: comma separated module:factory or names; "
        "'none' runs none.",
    )
    ai_ingest_connections: int = Field(2, ge=1, le=32, description="Pool size of the ingest actor.")
    # perception, wave 2: bounded buffers, detector deadlines, zone bounds
    ai_ingest_max_buffer: int = Field(
        20000, ge=100, le=1_000_000,
        description="Frames the ingest actor buffers while PostgreSQL is slow or away; older ones are dropped "
        "and counted.",
    )  # fmt: skip
    ai_detect_timeout_s: float = Field(
        10, ge=0.5, le=600, description="A detector call running longer is dropped (cause timeout) and the "
        "detector replaced.",
    )  # fmt: skip
    zone_max_tracks: int = Field(
        2000, ge=10, le=1_000_000, description="Tracks the zone engine keeps per camera; the least recently seen "
        "beyond this are dropped.",
    )  # fmt: skip
    frame_ticket_secret: str | None = Field(
        None, description="HMAC key for frame tickets; unset: a random key stored once in the database."
    )
    frame_ticket_ttl_s: int = Field(
        120,
        ge=10,
        le=900,
        validation_alias=_also("frame_ticket_ttl_s"),
        description="Frame ticket lifetime in seconds.",
    )
    ingest_provenance: Literal["off", "warn", "enforce"] = Field(
        "warn", description="Ticketless worker batches: off accepts, warn accepts and logs, enforce refuses (401)."
    )

    # --- zones, events, webhooks ------------------------------------------------------------
    zone_track_timeout_s: float = Field(
        120, ge=1, le=3600, description="A track unseen this long (frame time) gets a synthetic zone exit."
    )
    events_stream_keepalive_s: float = Field(
        15, ge=0.5, le=300, description="Idle interval after which the event stream sends a keep-alive comment."
    )
    events_stream_recheck_s: float = Field(
        60, ge=1, le=3600, description="How often an open event stream re-checks its credential."
    )
    webhooks_enabled: bool = Field(True, description="Run webhook delivery in each API process.")
    webhook_interval_s: float = Field(
        5,
        ge=0.1,
        le=3600,
        validation_alias=_also("webhook_interval_s"),
        description="Webhook delivery sweep cadence (new events also wake it at once).",
    )
    webhook_timeout_s: float = Field(10, gt=0, le=120, description="Timeout of one webhook POST.")
    webhook_max_attempts: int = Field(
        5, ge=1, le=100, description="Attempts per event and subscription before the event is skipped."
    )
    webhook_retry_base_s: float = Field(
        2, ge=0, le=3600, description="First retry delay of a failed webhook delivery; doubles per attempt."
    )
    webhook_retry_max_s: float = Field(300, ge=0, le=86400, description="Cap on the webhook retry delay.")
    webhook_allow_private: bool = Field(
        False,
        description="Allow webhook URLs resolving to loopback or link-local addresses (labs, tests); "
        "cloud metadata addresses stay refused.",
    )

    # --- cli: the MQTT sink and Home Assistant discovery (heldar/mqtt/) ----------------------------------
    mqtt_url: str | None = Field(
        None,
        description="MQTT broker, mqtt://[user:password@]host[:1883] or mqtts:// (TLS); unset: no MQTT. Every "
        "event is published to <prefix>/<camera>/<event_type>, at least once.",
    )
    mqtt_topic_prefix: str = Field(
        "heldar", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-/]+$", description="First MQTT topic level."
    )
    mqtt_discovery: bool = Field(True, description="Publish Home Assistant discovery for camera state and zones.")
    mqtt_discovery_prefix: str = Field(
        "homeassistant", min_length=1, max_length=64, description="Home Assistant's discovery topic prefix."
    )
    mqtt_interval_s: float = Field(
        2, ge=0.1, le=3600, description="MQTT sweep cadence (new events also wake it at once)."
    )
    mqtt_client_id: str | None = Field(None, description="MQTT client id; unset: heldar-<host>-<pid>.")

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must be an mqtt:// or mqtts:// URL")
        return value

    # --- security (issue 14): throttling, request limits, secrets at rest, URL vetting ---------
    login_rate_per_source_per_min: int = Field(
        10,
        ge=0,
        le=100000,
        description="Login attempts one client address may make per minute (429 past it); 0 = no limit.",
    )
    login_rate_global_per_min: int = Field(
        120, ge=0, le=1000000, description="Login attempts all clients together may make per minute; 0 = no limit."
    )
    login_max_concurrent_hashes: int = Field(
        2, ge=1, le=64, description="Password verifications running at once; a login waiting over 5 s gets 429."
    )
    login_trusted_source_days: float = Field(
        30,
        ge=0,
        le=3650,
        description="A locked account still admits a client address that logged in to it within this many days "
        "(and has not failed there itself); 0 = a lock refuses everyone.",
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, le=1024**3, description="Largest request body; larger ones get 413 before being read."
    )
    max_ingest_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, le=1024**3, description="Largest request body on /api/v1/ai/events."
    )
    events_stream_max: int = Field(100, ge=1, le=100000, description="Open /events/stream connections per process.")
    events_stream_max_per_principal: int = Field(
        10, ge=1, le=100000, description="Open /events/stream connections per credential."
    )
    # exclude=True: never in model_dump(), so the key does not travel in the settings actors get as
    # arguments; actors read HELDAR_SECRET_KEY from their own environment (heldar.secrets.current()).
    secret_key: str | None = Field(
        None,
        exclude=True,
        description="Key sealing camera passwords, webhook secrets and the frame-ticket key at rest (AES-GCM; "
        "32+ characters, or 64 hex digits); unset: they are stored in clear (a warning at start).",
    )
    secret_key_previous: str | None = Field(
        None,
        exclude=True,
        description="The previous HELDAR_SECRET_KEY during a rotation: still opens old values, which are re-sealed.",
    )
    camera_allowed_cidrs: str | None = Field(
        None,
        description="Comma-separated networks camera stream and replay URLs may point at; unset: any address "
        "except cloud metadata ones.",
    )
    camera_probe_max_concurrent: int = Field(
        2, ge=1, le=64, description="Camera stream tests (/cameras/{id}/test) running at once (one per camera)."
    )
    allowed_hosts: str | None = Field(
        None, description="Comma-separated Host names the API answers (e.g. nvr.example,127.0.0.1); unset: any."
    )
    ai_max_leases_per_credential: int = Field(
        64, ge=1, le=100000, description="Live AI task leases one credential may hold."
    )

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("schedule_timezone")
    @classmethod
    def _check_schedule_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                raise ValueError("must be an IANA time zone name such as Europe/Berlin") from None
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("bootstrap_admin_password")
    @classmethod
    def _check_bootstrap_password(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 8:
            raise ValueError("must be at least 8 characters")
        return value

    @field_validator("camera_allowed_cidrs")
    @classmethod
    def _check_cidrs(cls, value: str | None) -> str | None:
        import ipaddress

        for part in (value or "").split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError names the bad network
        return value

    @field_validator("secret_key", "secret_key_previous")
    @classmethod
    def _check_secret_key(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("must be at least 32 characters (or 64 hex digits)")
        return value

    @model_validator(mode="after")
    def _derive_dirs(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if self.recordings_dir is None:
            self.recordings_dir = self.data_dir / "recordings"
        self.recordings_dir = self.recordings_dir.expanduser().resolve()
        self.clips_dir = (self.clips_dir or self.data_dir / "clips").expanduser().resolve()
        self.live_dir = (self.live_dir or self.data_dir / "live").expanduser().resolve()
        return self

    @property
    def recordings_root(self) -> Path:
        assert self.recordings_dir is not None
        return self.recordings_dir

    @property
    def live_root(self) -> Path:
        assert self.live_dir is not None
        return self.live_dir

    @property
    def clips_root(self) -> Path:
        assert self.clips_dir is not None
        return self.clips_dir

    def for_actors(self) -> dict[str, Any]:
        """The settings Ray actors are given as arguments: every value but the secrets (security F16/F22).
        Actors get the database URL as a reference (``heldar.secrets.transit``) and read HELDAR_SECRET_KEY from
        their own environment; the admin password, the frame-ticket key and the MQTT URL stay in the API."""
        return self.model_dump(mode="json", exclude=set(SECRET_FIELDS))

    def database_ref(self, database_url: str) -> str:
        """What an actor gets instead of ``database_url`` (see ``heldar.secrets.transit``)."""
        from heldar.secrets.transit import database_ref

        return database_ref(database_url, self.data_dir / ".secrets")


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _field_of(loc: str) -> str:
    """The field an error location names (pydantic reports an aliased field under its first alias)."""
    upper = loc.upper()
    if upper.startswith(ENV_PREFIX) and upper[len(ENV_PREFIX) :].lower() in Settings.model_fields:
        return upper[len(ENV_PREFIX) :].lower()
    return next((f for f, alias in UPSTREAM_ALIASES.items() if alias == upper), loc)


def variable_set_for(field: str, environ: Mapping[str, str] | None = None) -> str:
    """The variable a setting was read from: ours, or upstream's spelling when only that one is set."""
    environ = os.environ if environ is None else environ
    ours, alias = env_name(field), UPSTREAM_ALIASES.get(field)
    if alias is not None and not environ.get(ours) and environ.get(alias):
        return alias
    return ours


def load_settings(**overrides: object) -> Settings:
    """Read the environment; raise ``SettingsError`` naming every bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = _field_of(str(err["loc"][0])) if err["loc"] else "?"
            value = err.get("input")
            hidden = field in SECRET_FIELDS or isinstance(value, dict) or value is None
            shown = "" if hidden else f" (got {str(value)[:60]!r})"
            problems.append(f"{variable_set_for(field)}: {err['msg']}{shown}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


def describe_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) rows for the README's configuration table; an upstream alias is
    named at the end of its setting's description."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        description = field.description or ""
        if name in UPSTREAM_ALIASES:
            description += f" Also read as {UPSTREAM_ALIASES[name]} (upstream's name)."
        rows.append((env_name(name), "" if default is None else str(default), description))
    return rows
