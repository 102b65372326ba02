"""RTSP authentication: Basic and Digest (MD5, RFC 2617) per camera path."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

AuthScheme = Literal["any", "basic", "digest"]
REALM = "heldar-fakecam"
NONCE_TTL_S = 3600.0

_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    scheme: AuthScheme = "any"


class Authenticator:
    """Issues challenges and checks ``Authorization`` headers; nonces are stateless HMACs."""

    def __init__(self, realm: str = REALM) -> None:
        self.realm = realm
        self._secret = secrets.token_bytes(16)

    def _nonce(self, issued: int | None = None) -> str:
        stamp = int(time.time()) if issued is None else issued
        mac = hmac.new(self._secret, str(stamp).encode(), hashlib.sha256).hexdigest()[:16]
        return f"{stamp:x}{mac}"

    def _nonce_valid(self, nonce: str) -> bool:
        if len(nonce) <= 16:
            return False
        try:
            stamp = int(nonce[:-16], 16)
        except ValueError:
            return False
        if time.time() - stamp > NONCE_TTL_S:
            return False
        return hmac.compare_digest(self._nonce(stamp), nonce)

    def challenges(self, creds: Credentials) -> list[str]:
        """``WWW-Authenticate`` header values (Digest first: clients prefer the first they support)."""
        out = []
        if creds.scheme in ("any", "digest"):
            out.append(f'Digest realm="{self.realm}", nonce="{self._nonce()}", algorithm=MD5')
        if creds.scheme in ("any", "basic"):
            out.append(f'Basic realm="{self.realm}"')
        return out

    def check(self, creds: Credentials, method: str, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, rest = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and creds.scheme in ("any", "basic"):
            try:
                decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return False
            user, sep, password = decoded.partition(":")
            return bool(sep) and _eq(user, creds.username) and _eq(password, creds.password)
        if scheme == "digest" and creds.scheme in ("any", "digest"):
            return self._check_digest(creds, method, rest)
        return False

    def _check_digest(self, creds: Credentials, method: str, rest: str) -> bool:
        params = {
            m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM_RE.finditer(rest)
        }
        needed = ("username", "realm", "nonce", "uri", "response")
        if any(k not in params for k in needed):
            return False
        if not _eq(params["username"], creds.username) or params["realm"] != self.realm:
            return False
        if not self._nonce_valid(params["nonce"]):
            return False
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm != "MD5":
            return False
        ha1 = _md5(f"{creds.username}:{self.realm}:{creds.password}")
        ha2 = _md5(f"{method}:{params['uri']}")
        qop = params.get("qop")
        if qop:
            if qop != "auth" or "nc" not in params or "cnonce" not in params:
                return False
            expected = _md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{qop}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{params['nonce']}:{ha2}")
        return hmac.compare_digest(expected, params["response"].lower())


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
