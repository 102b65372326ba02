"""The API's link to the supervisor actor: found by name, never owned, tolerant of its absence."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)


class SupervisorLink:
    """Looks the named ``supervisor`` up lazily so the API survives supervisor restarts."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._handle: Any = None

    def _get(self) -> Any | None:
        if self._handle is None:
            import ray

            if not ray.is_initialized():
                return None
            from actors.handles import get_supervisor

            self._handle = get_supervisor(self.namespace)
        return self._handle

    async def call(self, method: str, *args: Any, timeout: float = 5.0) -> Any:
        """Call a supervisor method; raises ``LookupError`` when there is no supervisor."""
        handle = self._get()
        if handle is None:
            raise LookupError("supervisor not running")
        try:
            return await asyncio.wait_for(getattr(handle, method).remote(*args), timeout)
        except Exception:
            self._handle = None  # look it up again next time (it may have been restarted)
            raise

    def notify(self, camera_id: str) -> None:
        """Tell the supervisor a camera changed; fire-and-forget (it also reconciles periodically)."""
        handle = self._get()
        if handle is None:
            logger.warning("supervisor not reachable; camera %s will be picked up by its periodic reconcile", camera_id)
            return
        try:
            handle.reconcile.remote(camera_id)
        except Exception as exc:
            self._handle = None
            logger.warning("could not notify supervisor about %s: %s", camera_id, exc.__class__.__name__)

    async def ping(self, timeout: float = 3.0) -> bool:
        try:
            result = await self.call("ping", timeout=timeout)
        except Exception:
            return False
        return bool(result and result.get("ok"))
