"""Login, credential resolution and logout over the store: the logic behind the auth routes.

Plain async functions over an asyncpg pool, so they are testable without HTTP. Tokens never leave
this module except in a login's return value; logs carry at most a masked prefix.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from heldar.auth.capabilities import ROLE_CAPABILITIES, Principal
from heldar.auth.grants import grant_from_row
from heldar.auth.lockout import LockoutPolicy
from heldar.auth.passwords import Passwords
from heldar.auth.sessions import SessionPolicy, should_touch_key
from heldar.auth.throttle import LoginThrottle, ThrottlePolicy
from heldar.auth.tokens import MAX_TOKEN_LENGTH, hash_token, is_api_key, mask_token, mint_session_token
from heldar.store import api_keys as key_store
from heldar.store import sessions as session_store
from heldar.store import users as user_store
from heldar.store.users import User

logger = logging.getLogger(__name__)

INVALID_CREDENTIALS = "invalid credentials"


@dataclass(frozen=True)
class LoginResult:
    token: str
    expires_at: datetime
    user: User
    locked_now: bool = False  # this failure locked the account (only on failures)


@dataclass(frozen=True)
class LoginFailure:
    """Why a login failed, for the audit trail only; the caller always sees one identical 401."""

    user: User | None
    locked_now: bool


def user_principal(user_id: str, username: str, role: str) -> Principal:
    return Principal(
        id=user_id, name=username, role=role, kind="user", capabilities=ROLE_CAPABILITIES.get(role, frozenset())
    )


class AuthService:
    def __init__(
        self,
        passwords: Passwords,
        sessions: SessionPolicy,
        lockout: LockoutPolicy,
        throttle: LoginThrottle | None = None,
        trusted_source_days: float = 30.0,
    ) -> None:
        self.passwords = passwords
        self.sessions = sessions
        self.lockout = lockout
        self.throttle = throttle or LoginThrottle(ThrottlePolicy(per_source_per_min=0, global_per_min=0))
        self.trusted_source_days = trusted_source_days

    async def hash_password(self, password: str) -> str:
        async with self.throttle.hashing():
            return await asyncio.to_thread(self.passwords.hash, password)

    async def login(
        self, pool: asyncpg.Pool, username: str, password: str, source: str = "unknown"
    ) -> LoginResult | LoginFailure:
        """Check a password login from ``source`` (the client address).

        Throttled per source and in total (``TooManyRequests``). The attempt is reserved in the database
        before the slow hash, so concurrency cannot buy extra guesses past the lockout; a right password is
        re-checked against a lock set meanwhile. A locked account still admits a source that logged in to it
        successfully before (within ``trusted_source_days``) and has not failed there itself
        ``max_failures`` times: an attacker elsewhere cannot lock the owner out. Unknown, disabled and
        locked accounts cost one dummy verification, so all failures take as long as a wrong password."""
        throttle = self.throttle
        throttle.admit(source)
        now = datetime.now(UTC)
        user = await user_store.find_by_username(pool, username)
        if user is None or not user.active:
            await self._verify_dummy(password)
            return LoginFailure(user=user, locked_now=False)
        attempt: int | None = None
        locked_now = False
        if self.lockout.enabled:
            reserved = await user_store.reserve_login_attempt(
                pool, user.id, max_failures=self.lockout.max_failures, lockout_s=self.lockout.duration.total_seconds()
            )
            if reserved is None and not await self._trusted(pool, user.id, source):
                await self._verify_dummy(password)
                throttle.record_failure(user.id, source)
                return LoginFailure(user=user, locked_now=False)
            if reserved is not None:
                attempt, locked_until = reserved
                locked_now = locked_until is not None
                if locked_now:
                    logger.warning("account %s locked after %s failed logins", user.id, attempt)
        async with throttle.hashing():
            ok = await asyncio.to_thread(self.passwords.verify, user.password_hash, password)
        if not ok:
            throttle.record_failure(user.id, source)
            return LoginFailure(user=user, locked_now=locked_now)
        if not await user_store.finish_login(pool, user.id, attempt):
            logger.warning("right password for %s refused: locked by concurrent failed logins", user.id)
            return LoginFailure(user=user, locked_now=False)
        throttle.clear_failures(user.id, source)
        await user_store.trust_source(pool, user.id, source)
        if self.passwords.needs_rehash(user.password_hash):
            await user_store.set_password_hash(pool, user.id, await self.hash_password(password))
        token = mint_session_token()
        expires_at = self.sessions.expires_at(now)
        await session_store.insert_session(pool, hash_token(token), user.id, expires_at)
        logger.info("user %s logged in (session %s)", user.id, mask_token(token))
        return LoginResult(token=token, expires_at=expires_at, user=user)

    async def _verify_dummy(self, password: str) -> None:
        async with self.throttle.hashing():
            await asyncio.to_thread(self.passwords.verify_dummy, password)

    async def _trusted(self, pool: asyncpg.Pool, user_id: str, source: str) -> bool:
        """May ``source`` try a locked account? It logged in before and has not used up its own failures."""
        if self.trusted_source_days <= 0 or self.throttle.failures(user_id, source) >= self.lockout.max_failures:
            return False
        return await user_store.is_trusted_source(pool, user_id, source, max_age_s=self.trusted_source_days * 86400)

    async def resolve(self, pool: asyncpg.Pool, token: str) -> Principal | None:
        """The principal a token stands for, or None (unknown, expired, idle, revoked, disabled)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        if is_api_key(token):
            return await self._resolve_key(pool, token)
        return await self._resolve_session(pool, token)

    async def _resolve_session(self, pool: asyncpg.Pool, token: str) -> Principal | None:
        token_hash = hash_token(token)
        found = await session_store.find_session(pool, token_hash)
        if found is None:
            return None
        now = datetime.now(UTC)
        if not self.sessions.is_valid(found.expires_at, found.last_used_at, now):
            await session_store.delete_session(pool, token_hash)
            logger.info("session %s of %s expired", mask_token(token), found.user_id)
            return None
        if not found.active:
            return None
        if self.sessions.should_touch(found.last_used_at, now):
            await session_store.touch_session(pool, token_hash)
        return user_principal(found.user_id, found.username, found.role)

    async def _resolve_key(self, pool: asyncpg.Pool, token: str) -> Principal | None:
        key = await key_store.find_by_hash(pool, hash_token(token))
        if key is None:
            return None
        now = datetime.now(UTC)
        if not key.active or key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
            return None
        grant, _ = grant_from_row(key.role, key.capabilities, key.scope_kind, key.scope_cameras)
        if grant is None:
            logger.warning("api key %s has a malformed grant; refusing it", key.id)
            return None
        if should_touch_key(key.last_used_at, now):
            await key_store.touch_key(pool, key.id)
        return Principal(
            id=key.id,
            name=key.name,
            role=key.role,
            kind="api_key",
            capabilities=grant.effective,
            camera_scope=grant.camera_scope,
        )

    async def logout(self, pool: asyncpg.Pool, token: str | None) -> bool:
        """Delete the presented session, if it is one; API keys are never touched here."""
        if not token or len(token) > MAX_TOKEN_LENGTH or is_api_key(token):
            return False
        return await session_store.delete_session(pool, hash_token(token))
