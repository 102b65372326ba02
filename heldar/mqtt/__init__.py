"""The MQTT sink: every event to ``<prefix>/<camera>/<event_type>`` (at least once, a cursor in PostgreSQL),
and Home Assistant discovery for camera state and zone occupancy."""

from heldar.mqtt.sink import MqttConfig, MqttSink, parse_mqtt_url

__all__ = ["MqttConfig", "MqttSink", "parse_mqtt_url"]
