"""Camera registry models: what a client may send, what the registry stores, what it shows.

``Camera`` is the stored row (password included, never serialised to clients); ``CameraView`` is what
the API answers (password dropped, URLs masked).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from heldar.camera_urls import (
    REPLAY_SCHEMES,
    STREAM_SCHEMES,
    check_url,
    hikvision_replay_template,
    is_valid_host,
    mask_url,
    url_passwords,
    vendor_stream_url,
    with_credentials,
)
from heldar.ids import CAMERA_ID_RE, slugify
from heldar.secrets import SecretError, open_text

logger = logging.getLogger(__name__)
CAMERA_PASSWORD = "camera-password"  # sealing purpose of cameras.password

Vendor = Literal["hikvision", "dahua", "generic"]
StreamProfile = Literal["main", "sub"]
Transport = Literal["tcp", "udp"]
# continuous: always; event: only footage near triggers is kept; scheduled: only inside the camera's
# schedule windows; scheduled_event: everything inside the windows, and event mode outside them.
RecordMode = Literal["continuous", "event", "scheduled", "scheduled_event"]

# Fields a client may set, with the bounds the API enforces.
_SETTABLE = (
    "name", "vendor", "model", "address", "rtsp_port", "username", "password", "main_stream_url",
    "sub_stream_url", "record_stream", "rtsp_transport", "segment_seconds", "retention_hours",
    "record_audio", "anr_enabled", "anr_replay_url_template", "priority", "enabled", "record_enabled",
    "record_mode", "pre_roll_seconds", "post_roll_seconds", "storage_quota_bytes",
)  # fmt: skip


# Settable fields a PATCH may clear with null; every other field always has a value.
NULLABLE_FIELDS = frozenset(
    {
        "model",
        "address",
        "username",
        "password",
        "main_stream_url",
        "sub_stream_url",
        "anr_replay_url_template",
        "storage_quota_bytes",
    }
)


def _no_control(value: str | None, what: str) -> str | None:
    if value is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{what} contains control characters")
    return value


class CameraFields(BaseModel):
    """Validation shared by create and patch: each field checked on its own."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(None, min_length=1, max_length=200, description="A name for people; 1-200 characters.")
    vendor: Vendor | None = Field(
        None, description="`hikvision` and `dahua` derive stream URLs from `address`; `generic` needs the URLs."
    )
    model: str | None = Field(None, max_length=200, description="The camera model, for people.")
    address: str | None = Field(
        None, max_length=253, description="Host name or IP of the camera (no scheme, port or path)."
    )
    rtsp_port: int | None = Field(None, ge=1, le=65535, description="The camera's RTSP port.")
    username: str | None = Field(None, max_length=128, description="The camera's user name, for its stream URLs.")
    password: str | None = Field(
        None, max_length=256, description="The camera's password; write-only (stored sealed with `HELDAR_SECRET_KEY`)."
    )
    main_stream_url: str | None = Field(
        None,
        max_length=2048,
        description="An explicit main-stream URL (`rtsp://`, `rtsps://`); overrides the vendor's.",
    )
    sub_stream_url: str | None = Field(
        None, max_length=2048, description="An explicit sub-stream URL; overrides the vendor's."
    )
    record_stream: StreamProfile | None = Field(None, description="Which stream is recorded: `main` or `sub`.")
    rtsp_transport: Transport | None = Field(
        None, description="RTSP transport for the camera's streams: `tcp` or `udp`."
    )
    segment_seconds: int | None = Field(
        None, ge=2, le=3600, description="Length of each recorded MP4 segment, seconds."
    )
    retention_hours: int | None = Field(None, ge=1, le=43800, description="Footage older than this is deleted, hours.")
    storage_quota_bytes: int | None = Field(None, gt=0, le=2**62, description="Per-camera footage quota; null: none")
    record_audio: bool | None = Field(None, description="Whether the audio track is recorded too.")
    anr_enabled: bool | None = Field(None, description="Back-fill recording gaps from the camera's own storage (ANR).")
    anr_replay_url_template: str | None = Field(
        None,
        max_length=2048,
        description="Replay URL with `{start}`/`{end}` placeholders for back-fill; vendor default if null.",
    )
    record_mode: RecordMode | None = Field(
        None, description="`continuous`, `event` (triggered windows), `scheduled` or `scheduled_event`."
    )
    pre_roll_seconds: int | None = Field(
        None, ge=0, le=300, description="Event recording: seconds kept before a trigger."
    )
    post_roll_seconds: int | None = Field(
        None, ge=0, le=3600, description="Event recording: seconds kept after a trigger."
    )
    priority: int | None = Field(
        None, ge=0, le=1000, description="Scheduling priority when resources are short (higher first)."
    )
    enabled: bool | None = Field(None, description="Whether the camera is supervised at all.")
    record_enabled: bool | None = Field(
        None, description="Whether the camera records (false: registered, not recording)."
    )

    @field_validator("name", "model", "username", "password")
    @classmethod
    def _printable(cls, value: str | None, info: Any) -> str | None:
        return _no_control(value, info.field_name)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and value != "" and not is_valid_host(value):
            raise ValueError("address must be a host name or IP address (no scheme, port, path or spaces)")
        return value or None

    @field_validator("main_stream_url", "sub_stream_url")
    @classmethod
    def _stream_url(cls, value: str | None) -> str | None:
        if value:
            problem = check_url(value, STREAM_SCHEMES)
            if problem:
                raise ValueError(problem)
        return value or None

    @field_validator("anr_replay_url_template")
    @classmethod
    def _replay_url(cls, value: str | None) -> str | None:
        if value:
            probe = value.replace("{start}", "20000101T000000Z").replace("{end}", "20000101T000000Z")
            problem = check_url(probe, REPLAY_SCHEMES)
            if problem:
                raise ValueError(problem)
        return value or None


class CameraCreate(CameraFields):
    id: str | None = Field(
        None,
        max_length=63,
        description="The camera's id, a slug (`[a-z0-9][a-z0-9_-]*`); derived from `name` when absent.",
    )
    name: str = Field(..., min_length=1, max_length=200, description="A name for people; 1-200 characters.")

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is not None and not CAMERA_ID_RE.match(value):
            raise ValueError("id must be a slug: lowercase letters, digits, '-' or '_', starting alphanumeric")
        return value

    @model_validator(mode="after")
    def _derive_id(self) -> CameraCreate:
        if self.id is None:
            derived = slugify(self.name)
            if not derived:
                raise ValueError("name yields no usable id; give an explicit id")
            self.id = derived
        return self


class CameraPatch(CameraFields):
    """Partial update; ``null`` clears the optional fields (urls, credentials, replay template)."""


class RecordingDefaults(BaseModel):
    segment_seconds: int = 60
    retention_hours: int = 24
    record_audio: bool = False


class Camera(BaseModel):
    """A stored camera, password included. Never returned to a client as is."""

    id: str
    name: str
    vendor: Vendor = "generic"
    model: str | None = None
    address: str | None = None
    rtsp_port: int = 554
    username: str | None = None
    password: str | None = None
    main_stream_url: str | None = None
    sub_stream_url: str | None = None
    record_stream: StreamProfile = "main"
    rtsp_transport: Transport = "tcp"
    segment_seconds: int = 60
    retention_hours: int = 24
    storage_quota_bytes: int | None = None
    record_audio: bool = False
    anr_enabled: bool = False
    anr_replay_url_template: str | None = None
    record_mode: RecordMode = "continuous"
    pre_roll_seconds: int = 10
    post_roll_seconds: int = 30
    priority: int = 100
    enabled: bool = True
    record_enabled: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_create(cls, body: CameraCreate, defaults: RecordingDefaults) -> Camera:
        values = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
        for key, value in defaults.model_dump().items():
            values.setdefault(key, value)
        values["id"] = body.id
        return cls(**values)

    def patched(self, patch: CameraPatch) -> Camera:
        changes = {k: getattr(patch, k) for k in patch.model_fields_set}
        cleared = sorted(k for k, v in changes.items() if v is None and k not in NULLABLE_FIELDS)
        if cleared:
            raise ValueError(f"{', '.join(cleared)} cannot be null")
        return self.model_copy(update=changes)

    def has_stream_url(self) -> bool:
        """Whether there is a URL to record from (explicit, or the vendor's from ``address``). A camera may be
        registered without one (a name is enough, as upstream): it shows state ``error`` with cause
        ``no_stream_url`` and gets no recorder until it has one (``heldar.store.cameras.HAS_STREAM_URL_SQL``)."""
        explicit = self.main_stream_url if self.record_stream == "main" else self.sub_stream_url
        return bool(explicit or vendor_stream_url(self.vendor, self.address, self.rtsp_port, self.record_stream))

    # --- URLs (credentials inside: for ffmpeg only) -------------------------------------------
    def clear_password(self) -> str | None:
        """The password in clear (stored sealed when HELDAR_SECRET_KEY is set): for ffmpeg's URL only.
        A value this process cannot open (no or another key) gives None and an error log: the camera then
        fails as unauthorized, visibly, instead of crashing whoever builds its URL."""
        try:
            return open_text(self.password, CAMERA_PASSWORD)
        except SecretError as exc:
            logger.error("camera %s: %s", self.id, exc)
            return None

    def stream_url(self, profile: StreamProfile, *, _password: str | None = None) -> str | None:
        explicit = self.main_stream_url if profile == "main" else self.sub_stream_url
        url = explicit or vendor_stream_url(self.vendor, self.address, self.rtsp_port, profile)
        password = _password if _password is not None or not self.password else self.clear_password()
        return with_credentials(url, self.username, password) if url else None

    def record_url(self) -> str | None:
        return self.stream_url(self.record_stream)

    def replay_url_template(self) -> str | None:
        """The ANR replay URL with ``{start}``/``{end}`` placeholders, credentials included."""
        template = self.anr_replay_url_template
        if template is None and self.address:
            template = hikvision_replay_template(self.address, self.rtsp_port, self.record_stream)
        return with_credentials(template, self.username, self.clear_password()) if template else None

    def secrets(self) -> tuple[str | None, ...]:
        """Every credential to hide from texts: the password (clear and sealed) and URL-embedded ones."""
        return (self.clear_password(), self.password, *url_passwords(self.main_stream_url, self.sub_stream_url,
                                                      self.anr_replay_url_template))  # fmt: skip

    def view(self) -> CameraView:
        data = self.model_dump(exclude={"password"})
        data["main_stream_url"] = mask_url(self.main_stream_url)
        data["sub_stream_url"] = mask_url(self.sub_stream_url)
        data["anr_replay_url_template"] = mask_url(self.anr_replay_url_template)
        data["has_password"] = bool(self.password)
        placeholder = "x" if self.password else None  # never unsealed for a view
        data["record_url_masked"] = mask_url(self.stream_url(self.record_stream, _password=placeholder))
        return CameraView(**data)


class CameraView(BaseModel):
    """A camera as the API shows it: no password, credentials masked in every URL."""

    id: str = Field(description="The camera's id.")
    name: str
    vendor: Vendor
    model: str | None
    address: str | None
    rtsp_port: int
    username: str | None
    has_password: bool = Field(description="Whether a password is stored (it is never shown).")
    main_stream_url: str | None
    sub_stream_url: str | None
    record_url_masked: str | None = Field(description="The URL recorded from, credentials masked.")
    record_stream: StreamProfile
    rtsp_transport: Transport
    segment_seconds: int
    retention_hours: int
    storage_quota_bytes: int | None
    record_audio: bool
    anr_enabled: bool
    anr_replay_url_template: str | None
    record_mode: RecordMode
    pre_roll_seconds: int
    post_roll_seconds: int
    priority: int
    enabled: bool
    record_enabled: bool
    created_at: datetime | None = Field(description="When the camera was registered (UTC).")
    updated_at: datetime | None = Field(description="When the camera was last changed (UTC).")


CAMERA_COLUMNS = ("id", *_SETTABLE)
