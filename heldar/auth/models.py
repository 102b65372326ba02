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
    username: Text = Field(min_length=1, max_length=256, description="The user's name.")
    password: Text = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH, description="The user's password.")


class UserView(BaseModel):
    id: str = Field(description="The user's id (`usr_...`).")
    username: str = Field(description="The login name.")
    role: str = Field(description="The user's role.")
    display_name: str | None = Field(description="A name for people.")
    active: bool = Field(description="Whether the user can log in.")
    locked_until: datetime | None = Field(
        description="Locked out after failed logins until then; null when not locked."
    )
    created_at: datetime = Field(description="When the user was created (UTC).")
    updated_at: datetime = Field(description="When the user was last changed (UTC).")


class LoginResponse(BaseModel):
    token: str = Field(
        description="The session token: send as `Authorization: Bearer` (it is also set as the session cookie)."
    )
    expires_at: datetime = Field(description="When the session ends at the latest (UTC).")
    user: UserView = Field(description="The logged-in user.")
    csrf_token: str = Field(description="Send as `X-Heldar-CSRF` on cookie-authenticated POST/PUT/PATCH/DELETE.")


class MeView(BaseModel):
    id: str = Field(description="The principal's id (user or API key).")
    name: str = Field(description="Its name.")
    role: str = Field(description="Its role.")
    kind: str = Field(description="`user`, `api_key` or `system` (auth off).")
    capabilities: list[str] = Field(description="Every capability it holds.")
    camera_scope: list[str] | None = Field(description="The cameras it is limited to; null: all cameras.")


class UserCreate(_Body):
    username: Username = Field(description="The login name (letters, digits, `._@+-`; 1-64).")
    password: Password = Field(description="The password (the password policy applies).")
    role: Role = Field("viewer", description="The user's role.")
    display_name: DisplayName | None = Field(None, description="A name for people.")
    active: StrictBool = Field(True, description="Whether the user can log in.")

    @field_validator("password")
    @classmethod
    def _policy(cls, value: str) -> str:
        return check_password_policy(value)


class UserPatch(_Body):
    _not_null = ("password", "role", "active")
    password: Password | None = Field(None, description="A new password (ends the user's other sessions).")
    role: Role | None = Field(None, description="A new role.")
    display_name: DisplayName | None = Field(None, description="A name for people; null clears it.")
    active: StrictBool | None = Field(None, description="false disables the user and ends their sessions.")

    @field_validator("password")
    @classmethod
    def _policy(cls, value: str | None) -> str | None:
        return None if value is None else check_password_policy(value)


class ApiKeyCreate(_Body):
    name: Text = Field(min_length=1, max_length=128, description="A name for people.")
    role: Role = Field(
        "integration", description="The key's role (its capabilities unless `capabilities` narrows them)."
    )
    capabilities: list[CapabilitySlug] | None = Field(
        None, max_length=64, description="Exactly these capabilities (within the role's); null: the role's."
    )
    scope_kind: ScopeKind = Field("all", description="`all` cameras, or only `cameras` in `scope_cameras`.")
    scope_cameras: list[CameraIdStr] = Field(
        default_factory=list, max_length=1000, description="The cameras a `cameras`-scoped key may reach."
    )
    expires_at: Timestamp | None = Field(None, description="When the key stops working (RFC 3339); null: never.")
    confirm_privileged: StrictBool = Field(
        False, description="Must be true to mint a key with a privileged role or capability."
    )


class ApiKeyPatch(_Body):
    _not_null = ("name", "active", "scope_kind", "scope_cameras")
    name: Text | None = Field(None, min_length=1, max_length=128, description="A name for people.")
    active: StrictBool | None = Field(None, description="false disables the key (true enables it again).")
    capabilities: list[CapabilitySlug] | None = Field(
        None, max_length=64, description="Exactly these capabilities; null: the role's."
    )
    scope_kind: ScopeKind | None = Field(None, description="`all` cameras, or only `cameras` in `scope_cameras`.")
    scope_cameras: list[CameraIdStr] | None = Field(
        None, max_length=1000, description="The cameras a `cameras`-scoped key may reach."
    )
    expires_at: Timestamp | None = Field(None, description="When the key stops working; null: never.")
    revoked_at: Timestamp | None = Field(None, description="Revoke the key (for good) as of this time.")
    confirm_privileged: StrictBool = Field(False, description="Must be true to widen a key to a privileged capability.")


class ApiKeyView(BaseModel):
    id: str = Field(description="The key's id (`key_...`).")
    name: str = Field(description="A name for people.")
    key_prefix: str = Field(
        description="The key's first characters, to recognise it (the key itself is never shown again)."
    )
    role: str = Field(description="The key's role.")
    active: bool = Field(description="Whether the key works.")
    last_used_at: datetime | None = Field(description="When the key last authenticated a request.")
    created_at: datetime = Field(description="When the key was minted (UTC).")
    capabilities: list[str] = Field(description="The capabilities the key holds.")
    legacy_role_expansion: bool = Field(
        description="True for a key minted before explicit capabilities: it holds its role's."
    )
    unknown_capabilities: list[str] = Field(description="Stored capabilities this version does not know (ignored).")
    scope_kind: str = Field(description="`all` cameras, or only `cameras` in `scope_cameras`.")
    scope_cameras: list[str] = Field(description="The cameras a `cameras`-scoped key may reach.")
    expires_at: datetime | None = Field(description="When the key stops working; null: never.")
    revoked_at: datetime | None = Field(description="When the key was revoked.")
    created_by: str | None = Field(description="Who minted it.")


class ApiKeyCreated(ApiKeyView):
    key: str = Field(description="The plaintext key: shown once, never stored.")


class AuditEntry(BaseModel):
    id: str = Field(description="The entry's id.")
    actor: str = Field(description="The principal's id.")
    actor_name: str | None = Field(description="Its name at the time.")
    role: str | None = Field(description="Its role at the time.")
    action: str = Field(description="What was done (`camera_create`, `login_failed`, ...).")
    target_type: str | None = Field(description="The kind of thing acted on (`camera`, `user`, ...).")
    target_id: str | None = Field(description="Its id.")
    detail: dict[str, Any] = Field(description="What changed (never secrets).")
    subject_camera_id: str | None = Field(description="The camera concerned, if any.")
    created_at: datetime = Field(description="When it happened (UTC).")
