"""How every benchmark reports: the JSON (to a file, or stdout) and its short table (stdout, or stderr)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def emit(result: Any, table_text: str, json_path: str | None) -> None:
    """With ``json_path``, write the JSON there and print the table; without, the JSON goes to stdout (for a
    pipe) and the table to stderr (for the person watching)."""
    text = json.dumps(result, indent=2, default=str)
    if json_path:
        Path(json_path).write_text(text + "\n", encoding="utf-8")
        print(table_text)
    else:
        print(text)
        print(table_text, file=sys.stderr)
