"""Domain errors. The API maps each to its HTTP status and a JSON ``{"error": ...}`` body."""

from __future__ import annotations


class HeldarError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(HeldarError):
    status = 400


class Unauthorized(HeldarError):
    status = 401


class Forbidden(HeldarError):
    status = 403


class NotFound(HeldarError):
    status = 404


class Conflict(HeldarError):
    status = 409


class Invalid(HeldarError):
    """Semantically invalid input (422) with optional per-field details."""

    status = 422

    def __init__(self, message: str, details: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class TooManyRequests(HeldarError):
    """A rate or concurrency limit refused the request (429); ``retry_after_s`` becomes ``Retry-After``."""

    status = 429

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(HeldarError):
    """A dependency (database, Ray) is unreachable; clients should retry."""

    status = 503
