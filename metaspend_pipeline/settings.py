"""Every setting the pipeline reads from the environment, in one place.

Each setting is documented in the README's configuration table; the defaults here are the
ones it lists. Nothing else in the package reads `os.environ` for configuration.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from metaspend_pipeline.errors import MetaspendError

DEFAULT_DATABASE_PATH = Path(".metaspend") / "metaspend.db"


class SettingsError(MetaspendError, ValueError):
    """An environment variable holds a value the pipeline cannot use."""


def _get(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name, "true" if default else "false").lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = _get(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = _get(env, name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _date(env: Mapping[str, str], name: str, default: str) -> dt.date:
    raw = _get(env, name, default)
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a date as YYYY-MM-DD, got {raw!r}") from None


def default_database_url(cwd: Path | None = None) -> str:
    path = (cwd or Path.cwd()) / DEFAULT_DATABASE_PATH
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class Settings:
    """Settings of the warehouse, the token vault and the schedules."""

    database_url: str
    env: str
    token_encryption_key: str | None = field(repr=False)
    token_encryption_old_keys: str | None = field(repr=False)
    page_access_token: str | None = field(repr=False)
    fallback_ad_account_id: str | None
    spend_start_date: dt.date
    spend_cron: str
    spend_enabled: bool
    spend_lookback_days: int
    roas_lookback_days: int
    token_refresh_cron: str
    token_refresh_enabled: bool
    token_refresh_within_days: int
    schedule_timezone: str

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            database_url=_get(env, "METASPEND_DATABASE_URL", default_database_url()),
            env=_get(env, "METASPEND_ENV", "production").lower(),
            token_encryption_key=env.get("META_TOKEN_ENCRYPTION_KEY") or None,
            token_encryption_old_keys=env.get("META_TOKEN_ENCRYPTION_OLD_KEYS") or None,
            page_access_token=env.get("META_PAGE_ACCESS_TOKEN") or None,
            fallback_ad_account_id=env.get("META_AD_ACCOUNT_ID") or None,
            spend_start_date=_date(env, "META_SPEND_START_DATE", "2024-01-01"),
            spend_cron=_get(env, "META_SPEND_CRON", "0 6 * * *"),
            spend_enabled=_bool(env, "META_SPEND_ENABLED", False),
            spend_lookback_days=_int(env, "META_SPEND_LOOKBACK_DAYS", 3),
            roas_lookback_days=_int(env, "METASPEND_ROAS_LOOKBACK_DAYS", 28),
            token_refresh_cron=_get(env, "META_TOKEN_REFRESH_CRON", "0 5 * * *"),
            token_refresh_enabled=_bool(env, "META_TOKEN_REFRESH_ENABLED", False),
            token_refresh_within_days=_int(env, "META_TOKEN_REFRESH_WITHIN_DAYS", 7, minimum=1),
            schedule_timezone=_get(env, "METASPEND_SCHEDULE_TIMEZONE", "UTC"),
        )
