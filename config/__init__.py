"""heldar configuration: ``Settings`` from ``HELDAR_*`` environment variables."""

from config.settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "load_settings"]
