"""The console's static files: only listed files are served, every answer carries the strict policy, and
every file the page or a module names is one the server serves (no broken or external reference)."""

from __future__ import annotations

import re
from pathlib import Path

from heldar.console_assets import CONTENT_SECURITY_POLICY, ConsoleAssets, headers_for

CONSOLE = Path(__file__).resolve().parents[2] / "api" / "console"


def test_only_listed_files_are_served(tmp_path: Path) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "js" / "a.js").write_text("export {};")
    (tmp_path / "notes.md").write_text("not a served type")
    (tmp_path / "secret.js").symlink_to(tmp_path / "index.html")
    (tmp_path.parent / "outside.js").write_text("nope")
    assets = ConsoleAssets(tmp_path)
    assert assets.names() == ["index.html", "js/a.js"]
    for name in ("../outside.js", "/etc/passwd", "notes.md", "secret.js", "js/../index.html", "js", ""):
        assert assets.get(name) is None, name
    page = assets.page()
    assert page.media_type.startswith("text/html") and assets.get("js/a.js").media_type.startswith("text/javascript")


def test_every_answer_carries_a_strict_policy(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("x")
    headers = headers_for(ConsoleAssets(tmp_path).page())
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["style-src"] == "'self'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY and "http" not in CONTENT_SECURITY_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"


def test_every_reference_in_the_console_resolves_to_a_served_file() -> None:
    assets = ConsoleAssets(CONSOLE)
    names = set(assets.names())
    assert {"index.html", "console.css", "js/app.js", "vendor/hls.light.min.mjs", "vendor/hls.js-LICENSE.txt"} <= names
    html = (CONSOLE / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="(/[^"#]*)"', html)
    assert refs, "the page names no files"
    for ref in refs:
        assert ref.startswith("/console/") and ref.removeprefix("/console/") in names, ref
    for path in sorted((CONSOLE / "js").glob("*.js")):
        text = path.read_text()
        assert "eval(" not in text and "new Function" not in text and "innerHTML" not in text, path.name
        for ref in re.findall(r'^import .* from "(\.[^"]+)";$', text, flags=re.M):
            target = (path.parent / ref).resolve().relative_to(CONSOLE.resolve()).as_posix()
            assert target in names, f"{path.name} imports {ref}"
