"""Request and response bodies of the auth, user, API-key and audit routes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from heldar.auth.passwords import MAX_PASSWORD_LENGTH, check_password_policy

Role = Literal["admin", "manager", "guard", "viewer", "integration"]
ScopeKind = Literal["all", "cameras"]
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"


def storable_text(value: str) -> str:
    """Text PostgreSQL and argon2 accept: valid UTF-8 (no lone surrogates) and no NUL characters."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(storable_text)]

_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def rfc3339_only(value: Any) -> Any:
    """Timestamps are RFC 3339 strings; pydantic would otherwise take numbers as Unix times."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339_START.match(value):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2025-01-31T12:00:00Z")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(rfc3339_only)]
Username = Annotated[Text, Field(min_length=1, max_length=64, pattern=USERNAME_PATTERN)]
DisplayName = Annotated[Text, Field(max_length=128)]
Password = Annotated[Text, Field(max_length=MAX_PASSWORD_LENGTH)]
CapabilitySlug = Annotated[Text, Field(min_length=1, max_length=64)]
CameraIdStr = Annotated[Text, Field(max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _not_null: tuple[str, ...] = ()  # optional fields that, when given, must not be null

    @model_validator(mode="after")
    def _no_explicit_nulls(self) -> _Body:
        nulled = sorted(f for f in self._not_null if f in self.model_fields_set and getattr(self, f) is None)
        if nulled:
            raise ValueError(f"{', '.join(nulled)} cannot be null")
        return self


class LoginRequest(_Body):
    # Login accepts any string up to these bounds: an unknown name simply fails like a wrong password.
    username: Text = Field(min_length=1, max_length=256)
    password: Text = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class UserView(BaseModel):
    id: str
    username: str
    role: str
    display_name: str | None
    active: bool
    locked_until: datetime | None
    created_at: datetime
    updated_at: datetime


class LoginResponse(BaseModel):
    token: str
    expires_at: datetime
    user: UserView
    csrf_token: str  # send as X-Heldar-CSRF on cookie-authenticated POST/PUT/PATCH/DELETE


class MeView(BaseModel):
    id: str
    name: str
    role: str
    kind: str
    capabilities: list[str]
    camera_scope: list[str] | None


class UserCreate(_Body):
    username: Username
    password: Password
    role: Role = "viewer"
    display_name: DisplayName | None = None
    active: StrictBool = True

    @field_validator("password")
    @classmethod
    def _policy(cls, value: str) -> str:
        return check_password_policy(value)


class UserPatch(_Body):
    _not_null = ("password", "role", "active")
    password: Password | None = None
    role: Role | None = None
    display_name: DisplayName | None = None
    active: StrictBool | None = None

    @field_validator("password")
    @classmethod
    def _policy(cls, value: str | None) -> str | None:
        return None if value is None else check_password_policy(value)


class ApiKeyCreate(_Body):
    name: Text = Field(min_length=1, max_length=128)
    role: Role = "integration"
    capabilities: list[CapabilitySlug] | None = Field(None, max_length=64)
    scope_kind: ScopeKind = "all"
    scope_cameras: list[CameraIdStr] = Field(default_factory=list, max_length=1000)
    expires_at: Timestamp | None = None
    confirm_privileged: StrictBool = False


class ApiKeyPatch(_Body):
    _not_null = ("name", "active", "scope_kind", "scope_cameras")
    name: Text | None = Field(None, min_length=1, max_length=128)
    active: StrictBool | None = None
    capabilities: list[CapabilitySlug] | None = Field(None, max_length=64)
    scope_kind: ScopeKind | None = None
    scope_cameras: list[CameraIdStr] | None = Field(None, max_length=1000)
    expires_at: Timestamp | None = None
    revoked_at: Timestamp | None = None
    confirm_privileged: StrictBool = False


class ApiKeyView(BaseModel):
    id: str
    name: str
    key_prefix: str
    role: str
    active: bool
    last_used_at: datetime | None
    created_at: datetime
    capabilities: list[str]
    legacy_role_expansion: bool
    unknown_capabilities: list[str]
    scope_kind: str
    scope_cameras: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str | None


class ApiKeyCreated(ApiKeyView):
    key: str = Field(description="The plaintext key: shown once, never stored.")


class AuditEntry(BaseModel):
    id: str
    actor: str
    actor_name: str | None
    role: str | None
    action: str
    target_type: str | None
    target_id: str | None
    detail: dict[str, Any]
    subject_camera_id: str | None
    created_at: datetime
