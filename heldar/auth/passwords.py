"""Password hashing with argon2id, and the dummy verification that equalises login timing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


def check_password_policy(password: str) -> str:
    """Return ``password`` when it meets the policy, else raise ``ValueError`` (never echoing it)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password must be at most {MAX_PASSWORD_LENGTH} characters")
    return password


@dataclass(frozen=True)
class Argon2Params:
    """argon2id cost parameters; the defaults are argon2-cffi's RFC 9106 low-memory profile."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4


class Passwords:
    """Hash and verify passwords. ``verify_dummy`` costs what a real verification costs."""

    def __init__(self, params: Argon2Params | None = None) -> None:
        p = params or Argon2Params()
        self._hasher = PasswordHasher(
            time_cost=p.time_cost,
            memory_cost=max(p.memory_kib, 8 * p.parallelism),  # argon2's floor
            parallelism=p.parallelism,
            type=Type.ID,
        )

    @cached_property
    def _dummy(self) -> str:
        # Hashed with the current parameters, so verifying against it takes as long as a real check.
        return self._hasher.hash("heldar-dummy-password-for-timing")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """True when ``password`` matches; a malformed stored hash counts as a mismatch."""
        try:
            return bool(self._hasher.verify(password_hash, password))
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError):
            logger.warning("stored password hash is malformed or unverifiable")
            return False

    def verify_dummy(self, password: str) -> None:
        """Spend a verification's time for an unknown, disabled or locked account."""
        self.verify(self._dummy, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return bool(self._hasher.check_needs_rehash(password_hash))
        except (InvalidHashError, ValueError):
            return True
