"""``heldar verify CLIP MANIFEST [--public-key HEX]``: check an exported clip and its signed manifest offline."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_UNREADABLE = 0, 1, 2


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "verify",
        help="check an exported clip against its signed manifest, offline (no server needed)",
        description="Check an exported clip against its signed manifest with no server: the Ed25519 signature, "
        "the clip's SHA-256, and every source segment's integrity-chain link. Exit 0 when all hold, 1 when "
        "something does not (each problem on its own line), 2 when a file cannot be read.",
        epilog="examples:\n"
        "  heldar verify clip_cam1_20260101T120000Z_clp_x.mp4 clip_cam1_20260101T120000Z_clp_x.mp4.manifest.json\n"
        "  heldar verify CLIP MANIFEST --public-key $(curl -s .../api/v1/system/signing-key | jq -r .public_key)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("clip", type=Path)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--public-key", default=None, help="the server's public key (hex) to trust")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from heldar.media.signing import load_manifest, verify_manifest

    try:
        manifest = load_manifest(args.manifest)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        print(f"heldar verify: cannot read the manifest: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if not args.clip.is_file():
        print(f"heldar verify: no such clip: {args.clip}", file=sys.stderr)
        return EXIT_UNREADABLE
    problems = verify_manifest(args.clip, manifest, args.public_key)
    if problems:
        for line in problems:
            print(f"FAIL {line}")
        return EXIT_FAILED
    segments = manifest.get("segments", [])
    print(f"OK {args.clip.name}: signature, clip hash and {len(segments)} segment chain link(s) verify "
          f"(camera {manifest.get('camera_id')}, key {str(manifest.get('public_key', ''))[:16]}...)")  # fmt: skip
    return EXIT_OK
