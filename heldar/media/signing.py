"""Signed clip manifests: what an exported clip was cut from, signed with the server's Ed25519 key.

A manifest lists the clip (file name, SHA-256, size, window) and every source segment with its SHA-256 and its
integrity-chain entry (``chain_seq``, ``chain_hash`` and the predecessor's hash ``chain_prev``), so each link
can be recomputed offline (:func:`heldar.media.integrity.chain_link`). The signature covers the canonical JSON
of everything but ``signature`` (sorted keys, no spaces). :func:`verify_manifest` checks a clip and its
manifest with no server: the signature (against the embedded public key, or one the verifier trusts), the
clip's hash, and every chain link. The key pair lives in the database (``media_signing_key``); the public key
is served at ``GET /api/v1/system/signing-key``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from heldar.media.integrity import chain_link, file_sha256

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"


def new_key_pair() -> tuple[bytes, bytes]:
    """(raw private key, raw public key), 32 bytes each."""
    key = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization as ser

    private = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    public = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return private, public


def canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def _t(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def build_manifest(
    *,
    camera_id: str,
    clip: dict[str, Any],
    clip_path: Path,
    segments: list[dict[str, Any]],
    prev_hashes: dict[int, str],
    private_key: bytes,
    signed_at: datetime,
) -> dict[str, Any]:
    """The signed manifest of a clip cut from ``segments`` (rows with their chain fields)."""
    key = Ed25519PrivateKey.from_private_bytes(private_key)
    from cryptography.hazmat.primitives import serialization as ser

    public = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "algorithm": "Ed25519",
        "public_key": public.hex(),
        "camera_id": camera_id,
        "signed_at": _t(signed_at),
        "clip": {
            "id": clip["id"],
            "filename": clip_path.name,
            "sha256": file_sha256(clip_path),
            "size_bytes": clip_path.stat().st_size,
            "from": _t(clip["from"]),
            "to": _t(clip["to"]),
        },
        "segments": [
            {
                "id": s["id"],
                "file_name": s["file_name"],
                "start": _t(s["start_time"]),
                "end": _t(s["end_time"]),
                "source": s["source"],
                "sha256": s["sha256"],
                "chain_seq": s["chain_seq"],
                "chain_hash": s["chain_hash"],
                "chain_prev": prev_hashes.get(s["chain_seq"] or 0),
            }
            for s in segments
        ],
    }
    manifest["signature"] = key.sign(canonical(manifest)).hex()
    return manifest


def verify_manifest(clip_path: Path, manifest: dict[str, Any], trusted_public_key: str | None = None) -> list[str]:
    """Problems found (empty: the clip and its manifest verify)."""
    problems: list[str] = []
    key_hex = trusted_public_key or manifest.get("public_key") or ""
    if trusted_public_key and manifest.get("public_key") != trusted_public_key:
        problems.append("the manifest names a different public key than the trusted one")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex)).verify(
            bytes.fromhex(manifest.get("signature", "")), canonical(manifest)
        )
    except (InvalidSignature, ValueError):
        problems.append("the signature does not verify: the manifest was changed or signed by another key")
    clip = manifest.get("clip", {})
    try:
        actual = file_sha256(clip_path)
    except OSError as exc:
        problems.append(f"cannot read the clip: {exc.__class__.__name__}")
    else:
        if actual != clip.get("sha256"):
            problems.append("the clip's SHA-256 differs from the manifest's: the clip was changed")
    camera = manifest.get("camera_id", "")
    for seg in manifest.get("segments", []):
        if not seg.get("chain_hash") or not seg.get("chain_prev"):
            problems.append(f"segment {seg.get('file_name')} has no chain entry")
            continue
        start, end = datetime.fromisoformat(seg["start"]), datetime.fromisoformat(seg["end"])
        if chain_link(seg["chain_prev"], seg["sha256"], camera, start, end, seg["source"]) != seg["chain_hash"]:
            problems.append(f"segment {seg.get('file_name')}: its chain link does not follow from its predecessor")
    by_seq = {s["chain_seq"]: s for s in manifest.get("segments", []) if s.get("chain_seq")}
    for seq, seg in by_seq.items():
        before = by_seq.get(seq - 1)
        if before is not None and before["chain_hash"] != seg["chain_prev"]:
            problems.append(f"segment {seg.get('file_name')}: chain_prev is not its predecessor's hash")
    return problems


def load_manifest(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("a manifest is a JSON object")
    return data
