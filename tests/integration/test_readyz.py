"""``/readyz`` over a real PostgreSQL: 503 with a reason for each failing check, 200 only when all hold.

The supervisor actor is outside this route's boundary: where a test needs a particular ``ping()`` answer
(loops stopped, role starting, today's shape without ``loops``) it links a stand-in answering that; the
unreachable case uses the real ``SupervisorLink`` with no Ray to find it in.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.supervisor_link import SupervisorLink
from config import load_settings
from heldar.store.database import connect

pytestmark = pytest.mark.integration

RUNNING = {"ok": True, "role": "active", "loops": {"reconcile": True, "health": True}, "db_ok": True, "cameras": 0}


class Answers(SupervisorLink):
    """Stands in for the supervisor actor: ``ping`` answers ``answer``."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__("unused")
        self.answer = answer

    async def call(self, method: str, *args: Any, timeout: float = 5.0) -> Any:
        assert method == "ping"
        return self.answer


@pytest.fixture(scope="module")
def db_url(new_database) -> str:  # type: ignore[no-untyped-def]
    return new_database()


def _client(db_url: str, tmp_path: Any, supervisor: SupervisorLink | None, **settings: Any) -> TestClient:
    app = create_app(load_settings(auth_enabled=False, data_dir=tmp_path, **settings), db_url, supervisor=supervisor)
    return TestClient(app)


@pytest.fixture
def link() -> Answers:
    return Answers(dict(RUNNING))


@pytest.fixture
def client(db_url: str, tmp_path: Any, link: Answers) -> Iterator[TestClient]:
    with _client(db_url, tmp_path, link) as c:
        yield c


def _sql(url: str, *statements: str) -> None:
    async def run() -> None:
        conn = await connect(url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def test_ready_when_every_check_holds(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"] is True and "reason" not in body
    assert body["checks"] == {"database": True, "supervisor": True}
    assert body["supervisor"] == {"reachable": True, "role": "active", "loops": RUNNING["loops"]}


def test_supervisor_loops_not_running_is_503(client: TestClient, link: Answers) -> None:
    link.answer = {**RUNNING, "ok": False, "loops": {"reconcile": True, "health": False}}
    r = client.get("/readyz")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    body = r.json()
    assert body["ready"] is False and body["reason"] == "supervisor"
    assert "health" in body["details"]["supervisor"] and "reconcile" not in body["details"]["supervisor"]
    assert body["checks"] == {"database": True, "supervisor": False}


@pytest.mark.parametrize(
    ("answer", "ready"),
    [
        ({"ok": True, "cameras": 3}, True),  # today's ping: no loops, no role — counts as running
        ({**RUNNING, "role": "standby"}, True),  # a standby's API serves; the active one records
        ({**RUNNING, "role": "starting"}, False),
        ({**RUNNING, "ok": False}, False),
        ({**RUNNING, "db_ok": False, "ok": False}, False),
    ],
)
def test_ping_shapes(client: TestClient, link: Answers, answer: dict[str, Any], ready: bool) -> None:
    link.answer = answer
    r = client.get("/readyz")
    assert (r.status_code == 200) is ready, r.text
    assert r.json()["ready"] is ready
    if not ready:
        assert r.json()["reason"] == "supervisor" and r.json()["details"]["supervisor"]


def test_supervisor_unreachable_is_503(db_url: str, tmp_path: Any) -> None:
    # The real link finds no supervisor to ask: Ray is not started (alone) or has none in this namespace.
    with _client(db_url, tmp_path, SupervisorLink(f"nowhere-{uuid.uuid4().hex[:6]}")) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["reason"] == "supervisor"
    assert r.json()["details"]["supervisor"] == "supervisor unreachable (not running)"
    assert r.json()["supervisor"]["reachable"] is False


def test_recorder_quorum(db_url: str, tmp_path: Any, link: Answers) -> None:
    _sql(
        db_url,
        "INSERT INTO cameras (id, name, main_stream_url) VALUES ('q1', 'q1', 'rtsp://x/1'), ('q2', 'q2', 'rtsp://x/2'),"
        " ('q3', 'q3', 'rtsp://x/3')",
        "INSERT INTO cameras (id, name, main_stream_url, enabled) VALUES ('q-off', 'q-off', 'rtsp://x/4', false)",
        "INSERT INTO camera_status (camera_id, state) VALUES ('q1', 'recording'), ('q2', 'offline'),"
        " ('q-off', 'recording')",  # q3 has no status row yet: not recording; q-off is not expected to record
    )
    try:
        with _client(db_url, tmp_path, link, readyz_min_recording_percent=50) as c:
            r = c.get("/readyz")
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["reason"] == "insufficient_recorders"
            assert body["recording_pct"] == 33.3 and body["required_pct"] == 50
            assert (body["recording"], body["expected"]) == (1, 3)
            assert "1 of 3" in body["details"]["insufficient_recorders"]
            _sql(db_url, "UPDATE camera_status SET state = 'recording' WHERE camera_id = 'q2'")
            r = c.get("/readyz")
            assert r.status_code == 200, r.text
            assert r.json()["recording_pct"] == 66.7 and r.json()["checks"]["recorders"] is True
        with _client(db_url, tmp_path, link) as c:  # no quorum by default: still reported, never failing
            body = c.get("/readyz").json()
            assert body["ready"] is True and body["required_pct"] == 0 and "recorders" not in body["checks"]
    finally:
        _sql(db_url, "DELETE FROM cameras WHERE id LIKE 'q%'")


def test_database_unreachable_is_503_naming_it(new_database, tmp_path: Any, link: Answers) -> None:  # type: ignore[no-untyped-def]
    url = new_database()
    with _client(url, tmp_path, link, readyz_min_recording_percent=50) as c:
        assert c.get("/readyz").status_code == 200
        name = urlsplit(url).path.lstrip("/")
        _sql(
            urlunsplit(urlsplit(url)._replace(path="/postgres")),
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            " AND pid <> pg_backend_pid()",
        )
        r = c.get("/readyz")
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["reason"].split(",")[0] == "database"
        assert body["details"]["database"].startswith("database unreachable")
        assert body["checks"]["database"] is False and body["checks"]["supervisor"] is True
