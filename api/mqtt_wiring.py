"""Runs the MQTT sink (``heldar/mqtt``) as an asyncio task of each API process when HELDAR_MQTT_URL is set.

Every replica runs one; the cursor row lock lets only one publish at a time. New events wake it at once
(through the event listener's broadcaster), otherwise it sweeps every ``HELDAR_MQTT_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import logging

from api.deps import AppState
from heldar.aio import cancel_and_wait
from heldar.mqtt.sink import MqttSink, config_from_settings

logger = logging.getLogger(__name__)


def install(state: AppState) -> None:
    config = config_from_settings(state.settings)
    if config is None:
        return

    async def start(st: AppState) -> None:
        if st.pool is None:
            return
        sink = MqttSink(st.pool, config)
        st.extras["mqtt_sink"] = sink
        tasks = [asyncio.create_task(sink.run(), name="heldar-mqtt-sink")]
        broadcaster = st.extras.get("event_broadcaster")
        if broadcaster is not None:
            tasks.append(asyncio.create_task(broadcaster.forward_wakes(sink.wake), name="heldar-mqtt-wake"))
        st.extras["mqtt_tasks"] = tasks
        logger.info("mqtt: publishing events to %s under %s/", config.where, config.prefix)

    async def stop(st: AppState) -> None:
        for task in await cancel_and_wait(st.extras.pop("mqtt_tasks", [])):
            logger.warning("mqtt: task %s did not end within 10 s of its cancel", task.get_name())
        st.extras.pop("mqtt_sink", None)

    state.extras.setdefault("startup_hooks", []).append(start)
    state.extras.setdefault("shutdown_hooks", []).append(stop)
