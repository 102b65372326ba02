"""The operator console's static files: a fixed set read once from a folder, served by name only.

No path from a request ever reaches the file system: the folder is listed at start and a request names one
of the listed files or gets nothing. Every answer carries :data:`CONTENT_SECURITY_POLICY`: scripts, styles,
fonts and connections from the page's own origin only, no inline script or style element, media from the
origin or ``blob:`` (hls.js feeds the ``<video>`` element through Media Source Extensions), images from the
origin or ``blob:`` (thumbnails fetched with the credential's header), no framing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
}
PAGE = "index.html"
MAX_FILES = 200


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes
    media_type: str
    etag: str


def security_headers() -> dict[str, str]:
    """Headers on every console answer (the redirect from ``/`` included)."""
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def headers_for(asset: Asset) -> dict[str, str]:
    """Security headers plus caching: revalidate each time (the files change with each release)."""
    return {**security_headers(), "Cache-Control": "no-cache", "ETag": asset.etag}


class ConsoleAssets:
    """The files under ``root`` whose suffix has a media type, keyed by their ``/``-separated relative name;
    read on first use and kept in memory (a few hundred KiB, most of it hls.js)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, Asset] | None = None

    def _load(self) -> dict[str, Asset]:
        if self._files is None:
            files: dict[str, Asset] = {}
            for path in sorted(self.root.rglob("*")):
                media_type = MEDIA_TYPES.get(path.suffix)
                if media_type is None or not path.is_file() or path.is_symlink():
                    continue
                name = path.relative_to(self.root).as_posix()
                body = path.read_bytes()
                files[name] = Asset(name, body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
                if len(files) >= MAX_FILES:
                    logger.warning("console: over %d files under %s; the rest are not served", MAX_FILES, self.root)
                    break
            if PAGE not in files:
                logger.warning("console: no %s under %s", PAGE, self.root)
            self._files = files
        return self._files

    def names(self) -> list[str]:
        return sorted(self._load())

    def get(self, name: str) -> Asset | None:
        """The file called ``name`` (relative, ``/``-separated) if it is one of the listed files."""
        return self._load().get(name)

    def page(self) -> Asset:
        found = self.get(PAGE)
        if found is None:
            raise FileNotFoundError(f"console page {PAGE} missing under {self.root}")
        return found
