"""Why did an ffmpeg run stop? Classify from its stderr tail, exit code and the watchdog's verdict.

Every stop gets a :class:`StopCause` with a stable ``code``, a sentence for a human and the
masked stderr tail. The patterns come from real ffmpeg 9 stderr (see the unit tests, which
produce them against small local peers), e.g.::

    [tcp @ 0x..] Connection to tcp://127.0.0.1:4771?timeout=1000000 failed: Connection refused
    [in#0 @ 0x..] method DESCRIBE failed: 401 (Unauthorized)
    [in#0 @ 0x..] Failed reading RTSP data: Connection timed out
    [tcp @ 0x..] Failed to resolve hostname cam.invalid: Name or service not known

Precedence matters: a socket timeout during RTSP set-up is followed by "Invalid data found when
processing input", which must read as ``timeout``, not ``codec``.
"""

from __future__ import annotations

import logging
import re
import signal
from dataclasses import dataclass
from typing import Literal

from heldar.camera_urls import mask_text

logger = logging.getLogger(__name__)

StopCode = Literal[
    "disk_full", "unauthorized", "not_found", "refused", "timeout", "unreachable", "codec", "stall", "exited"
]

TAIL_CHARS = 800

_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://\S+")
_CONTEXT_PREFIX_RE = re.compile(r"^\[[^\]]*@ 0x[0-9a-fA-F]+\]\s*")
_STATUS_RE = re.compile(r"method (\w+) failed: (\d{3}) \(([^)]*)\)")
_STATUS_CODES = frozenset({"unauthorized", "not_found", "refused"})


@dataclass(frozen=True, slots=True)
class StopCause:
    """Why a run stopped: ``code`` for machines, ``message`` for people, ``tail`` for detail."""

    code: StopCode
    message: str
    detail: str  # the stderr line that decided it (masked, without ffmpeg's "[ctx @ 0x..]")
    tail: str  # last ~800 chars of stderr, masked
    returncode: int | None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class _Rule:
    code: StopCode
    pattern: re.Pattern[str]
    message: str  # before output
    message_after_output: str | None = None  # when the run had already recorded something


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


_RULES: tuple[_Rule, ...] = (
    # First: a full disk makes the muxer fail to write a header or a packet, which would otherwise read as
    # "codec" ("Could not write header") or a plain exit.
    _Rule(
        "disk_full",
        _rx(r"no space left on device", r"disk quota exceeded", r"\bENOSPC\b"),
        "the recordings disk is full (no space left on device); recording resumes when space is freed",
    ),
    _Rule(
        "unauthorized",
        _rx(r"\b401\b", r"\bunauthorized\b", r"authori[sz]ation failed"),
        "camera refused the connection (401 Unauthorized): check username/password",
    ),
    _Rule(
        "unauthorized",
        _rx(r"\b403\b", r"\bforbidden\b"),
        "camera refused access (403 Forbidden): the user lacks permission for this stream",
    ),
    _Rule(
        "not_found",
        _rx(r"\b404\b"),
        "camera has no such stream (404 Not Found): check the stream path in the URL",
    ),
    _Rule(
        "refused",
        _rx(r"connection refused"),
        "connection refused: nothing listens on that host/port (camera off, wrong port, or RTSP disabled)",
    ),
    _Rule(
        "refused",
        _rx(r"\b503\b", r"5XX Server Error", r"service unavailable"),
        "camera is busy or unavailable (503): too many sessions or the stream is not ready",
    ),
    _Rule(
        "refused",
        _rx(r"\b454\b", r"session not found"),
        "camera rejected the RTSP session (454 Session Not Found)",
    ),
    _Rule(
        "refused",
        _rx(r"4XX Client Error", r"method \w+ failed: [45]\d\d", r"server returned [45]\d\d"),
        "camera rejected the request: check the URL path and the RTSP transport (tcp/udp)",
    ),
    _Rule(
        "timeout",
        _rx(r"timed out", r"no route to host"),
        "connection to the camera timed out: host down, firewalled, or not answering",
        "camera stopped sending data (socket I/O timeout)",
    ),
    _Rule(
        "unreachable",
        _rx(
            r"host is unreachable",
            r"network is unreachable",
            r"failed to resolve hostname",
            r"name or service not known",
            r"temporary failure in name resolution",
            r"nodename nor servname",
            r"no address associated with hostname",
        ),
        "camera host is unreachable: check the address/hostname and the network",
    ),
    _Rule(
        "refused",
        _rx(r"connection reset by peer", r"broken pipe", r"failed reading rtsp data: end of file"),
        "camera closed the connection during set-up (session limit reached, or not an RTSP server?)",
        "camera dropped the connection",
    ),
    _Rule(
        "codec",
        _rx(
            r"could not find codec parameters",
            r"unsupported codec",
            r"codec not currently supported in container",
            r"not supported (?:by|in) (?:the )?(?:muxer|container)",
            r"could not write header",
            r"error initializing output stream",
            r"incompatible with output codec",
            r"invalid data found when processing input",
            r"\bmuxer\b.*\b(?:error|failed)",
            r"decoder .* not found",
        ),
        "the stream could not be recorded as is (unsupported codec or invalid data)",
    ),
)


def _clean_line(line: str) -> str:
    return _CONTEXT_PREFIX_RE.sub("", line.strip())


def _tail(masked: str, limit: int = TAIL_CHARS) -> str:
    if len(masked) <= limit:
        return masked.strip()
    cut = masked[-limit:]
    newline = cut.find("\n")
    if 0 <= newline < len(cut) - 1:
        cut = cut[newline + 1 :]  # start on a line boundary
    return cut.strip()


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def classify_exit(
    stderr_tail: str,
    returncode: int | None,
    *,
    killed_for_stall: bool,
    produced_output: bool,
) -> StopCause:
    """Classify why an ffmpeg run stopped.

    ``returncode`` is ``Popen.returncode`` (negative = killed by that signal, ``None`` = unknown);
    ``killed_for_stall`` says the progress watchdog killed it (wins over everything);
    ``produced_output`` says the run wrote at least one segment (changes some messages).
    The first rule whose pattern matches any stderr line wins; rules are checked in order, lines
    newest first within a rule. Anything unmatched is ``exited``.
    """
    masked = mask_text(stderr_tail or "")
    tail = _tail(masked)
    lines = [_clean_line(line) for line in masked.splitlines() if line.strip()]

    if killed_for_stall:
        return StopCause(
            "stall",
            "no new video was written for too long; the recorder was restarted",
            lines[-1] if lines else "",
            tail,
            returncode,
        )

    # Match on lines without URLs, so a stream path like /Streaming/Channels/401 reads as no status.
    plain = [_URL_RE.sub("<url>", line) for line in lines]
    for rule in _RULES:
        for line, text in zip(reversed(lines), reversed(plain), strict=True):
            if rule.pattern.search(text):
                message = rule.message
                if produced_output and rule.message_after_output:
                    message = rule.message_after_output
                statuses = _STATUS_RE.findall(masked)
                if statuses and rule.code in _STATUS_CODES and statuses[-1][1] not in message:
                    method, status, reason = statuses[-1]
                    message = f"{message} [{method} → {status} {reason}]"
                return StopCause(rule.code, message, line, tail, returncode)

    last = lines[-1] if lines else ""
    if returncode == 0:
        message = "stream ended (ffmpeg exited normally)"
    elif returncode is None:
        message = "ffmpeg stopped"
    elif returncode < 0:
        message = f"ffmpeg was killed by {_signal_name(-returncode)}"
    else:
        message = f"ffmpeg exited with code {returncode}"
    if last and returncode != 0:
        message = f"{message}: {last}"
    return StopCause("exited", message, last, tail, returncode)
