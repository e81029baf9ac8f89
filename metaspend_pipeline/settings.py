"""Every setting the pipeline reads from the environment, in one place.

Each setting is documented in docs/configuration.md; the defaults here are the
ones it lists. Nothing else in the package reads `os.environ` for configuration.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from metaspend_pipeline.errors import MetaspendError
from metaspend_pipeline.meta.models import BREAKDOWN_SETS
from metaspend_pipeline.meta.versions import DEFAULT_VERSION
from metaspend_pipeline.redaction import shown_url

DEFAULT_DATABASE_PATH = Path(".metaspend") / "metaspend.db"
GRAPH_API_URL = "https://graph.facebook.com"
# The ECB's euro reference rates of the last 90 days (`fx.feed_url` switches to the full history,
# eurofxref-hist.xml beside it, for older ranges).
ECB_RATES_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist-90d.xml"
SANDBOX_ECB_PATH = "/__sandbox/ecb/eurofxref-hist-90d.xml"
BUNDLED_FX_RATES = Path(__file__).parent / "data" / "eurofxref-sandbox.xml.gz"
_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?", re.ASCII)
_API_VERSION = re.compile(r"v[0-9]{1,3}\.[0-9]{1,3}", re.ASCII)


# The levels breakdowns and reach may be fetched at (Meta's `level`); META_BREAKDOWNS lists sets of BREAKDOWN_SETS.
BREAKDOWN_LEVELS = ("campaign", "adset", "ad")
REACH_LEVELS = ("account", "campaign", "adset", "ad")

# Where `metaspend backfill` submits backfills: the Dagster webserver's GraphQL API (`dg dev`'s default).
DAGSTER_URL = "http://127.0.0.1:3000"


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
    if not _INTEGER.fullmatch(raw):  # int() alone also reads non-ASCII digits such as "١٢"
        raise SettingsError(f"{name} must be a whole number, got {raw!r}")
    value = int(raw)
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = _get(env, name, str(default))
    if not _NUMBER.fullmatch(raw):  # float() alone also reads "nan", "inf" and non-ASCII digits
        raise SettingsError(f"{name} must be a number, got {raw!r}")
    value = float(raw)
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _decimal(env: Mapping[str, str], name: str, default: Decimal) -> Decimal:
    """An exact decimal (a ratio compared with money): read as written, never through a float."""
    raw = _get(env, name, str(default))
    if not _NUMBER.fullmatch(raw):
        raise SettingsError(f"{name} must be a number such as {default}, got {raw!r}")
    return Decimal(raw)


def _date(env: Mapping[str, str], name: str, default: str) -> dt.date:
    raw = _get(env, name, default)
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a date as YYYY-MM-DD, got {raw!r}") from None


def _environment(env: Mapping[str, str]) -> str:
    return _get(env, "METASPEND_ENV", "production").lower()


def _graph_api_url(env: Mapping[str, str]) -> str:
    """Where decrypted tokens and the app secret are sent: Meta itself, unless METASPEND_ENV=development
    (the sandbox). Only the environment chooses it, never run config, so a launched run cannot redirect
    them."""
    raw = _get(env, "META_GRAPH_API_URL", GRAPH_API_URL)
    parts = urllib.parse.urlsplit(raw)
    if "@" in parts.netloc or parts.query or parts.fragment:
        # what would follow may be a credential: never repeat it
        raise SettingsError("META_GRAPH_API_URL must not carry a user name, password, query or fragment")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"META_GRAPH_API_URL must be an http(s) URL with a host, got {raw!r}")
    if _environment(env) == "development":
        return raw
    if parts.scheme != "https":
        raise SettingsError(
            f"META_GRAPH_API_URL {raw!r} uses plain http, which is refused outside METASPEND_ENV=development"
        )
    if parts.hostname != "graph.facebook.com" or parts.port not in (None, 443) or parts.path not in ("", "/"):
        raise SettingsError(
            f"META_GRAPH_API_URL {raw!r} is not {GRAPH_API_URL}; another endpoint (such as the sandbox) "
            "is accepted only with METASPEND_ENV=development"
        )
    return GRAPH_API_URL


def fx_rates_url(env: Mapping[str, str] | None = None) -> str:
    """Where the ECB's reference rates are read: METASPEND_FX_RATES_URL, else the ECB itself, or
    with METASPEND_ENV=development and META_GRAPH_API_URL pointing elsewhere than Meta, the
    sandbox's copy. `bundled` is the synthetic file shipped in the package (the sandbox's rates,
    for offline demos); `file:///path` any local file in the ECB's format. Plain http only in
    development. A query string (a mirror's api key) is sent but never shown (`redaction.shown_url`);
    a user name or password is refused."""
    env = os.environ if env is None else env
    raw = _get(env, "METASPEND_FX_RATES_URL", "")
    development = _environment(env) == "development"
    if not raw:
        graph = _graph_api_url(env) if development else GRAPH_API_URL
        return graph.rstrip("/") + SANDBOX_ECB_PATH if graph != GRAPH_API_URL else ECB_RATES_URL
    if raw.lower() == "bundled":
        return BUNDLED_FX_RATES.as_uri()
    parts = urllib.parse.urlsplit(raw)
    shown = shown_url(raw)
    if parts.scheme == "file":
        if not parts.path or parts.netloc not in ("", "localhost"):
            raise SettingsError(f"METASPEND_FX_RATES_URL {shown!r} must be file:///absolute/path")
        return raw
    if "@" in parts.netloc:
        raise SettingsError("METASPEND_FX_RATES_URL must not carry a user name or password")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"METASPEND_FX_RATES_URL must be an https URL, a file:/// path or `bundled`, got {shown!r}")
    if parts.scheme == "http" and not development:
        raise SettingsError(
            f"METASPEND_FX_RATES_URL {shown!r} uses plain http, which is refused outside METASPEND_ENV=development"
        )
    return raw


def fx_timeout_seconds(env: Mapping[str, str] | None = None) -> float:
    """The most reading the ECB's rates may take, connection, retries and waits included."""
    env = os.environ if env is None else env
    return _float(env, "METASPEND_FX_TIMEOUT_SECONDS", 120.0, minimum=1.0)


def _api_version(env: Mapping[str, str]) -> str:
    raw = _get(env, "META_API_VERSION", MetaApiSettings.api_version)
    version = raw if raw.startswith("v") else f"v{raw}"
    if not _API_VERSION.fullmatch(version):
        raise SettingsError(f"META_API_VERSION must look like {DEFAULT_VERSION}, got {raw!r}")
    return version


# The attribution windows Meta's insights still return (`7d_view` and `28d_view` stopped in 2026-01).
ATTRIBUTION_WINDOWS = ("1d_click", "7d_click", "28d_click", "1d_view", "1d_ev")


def _attribution_windows(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = _get(env, "META_ATTRIBUTION_WINDOWS", ",".join(MetaApiSettings.attribution_windows))
    windows = tuple(dict.fromkeys(w.strip() for w in raw.split(",") if w.strip()))
    for window in windows:
        if window not in ATTRIBUTION_WINDOWS:
            raise SettingsError(
                f"META_ATTRIBUTION_WINDOWS: {window!r} is not one of Meta's attribution windows "
                f"({', '.join(ATTRIBUTION_WINDOWS)})"
            )
    return windows


def _choices(env: Mapping[str, str], name: str, default: tuple[str, ...], allowed: Iterable[str]) -> tuple[str, ...]:
    """A comma-separated list of names from `allowed`, each once; set but empty is the empty list (off)."""
    raw = env.get(name)
    if raw is None:
        return default
    names = tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
    allowed = tuple(allowed)
    for chosen in names:
        if chosen not in allowed:
            raise SettingsError(f"{name}: {chosen!r} is not one of {', '.join(allowed)}")
    return names


def _nonempty(names: tuple[str, ...], name: str) -> tuple[str, ...]:
    if not names:
        raise SettingsError(f"{name} must name at least one level")
    return names


def _attribution_gap_warn(env: Mapping[str, str]) -> Decimal:
    """The gap |meta - crm| / max(meta, crm) lies in [0, 1]: a threshold of 1 or more never warns."""
    value = _decimal(env, "META_ATTRIBUTION_GAP_WARN", Decimal("0.5"))
    if not 0 <= value < 1:
        raise SettingsError(f"META_ATTRIBUTION_GAP_WARN must be at least 0 and less than 1 (0.5 = 50%), got {value}")
    return value


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
    fetch_window_days: int
    freshness_deadline_cron: str
    objects_refresh_hours: float = 24.0
    fetch_concurrency: int = 4
    spend_shards: int = 1
    attribution_gap_warn: Decimal = Decimal("0.5")
    dagster_url: str = DAGSTER_URL
    breakdowns: tuple[str, ...] = tuple(BREAKDOWN_SETS)
    breakdown_levels: tuple[str, ...] = ("campaign",)
    reach_levels: tuple[str, ...] = ("campaign", "adset")

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            database_url=_get(env, "METASPEND_DATABASE_URL", default_database_url()),
            env=_environment(env),
            token_encryption_key=(env.get("META_TOKEN_ENCRYPTION_KEY") or "").strip() or None,
            token_encryption_old_keys=env.get("META_TOKEN_ENCRYPTION_OLD_KEYS") or None,
            page_access_token=(env.get("META_PAGE_ACCESS_TOKEN") or "").strip() or None,
            fallback_ad_account_id=env.get("META_AD_ACCOUNT_ID") or None,
            spend_start_date=_date(env, "META_SPEND_START_DATE", "2024-01-01"),
            spend_cron=_get(env, "META_SPEND_CRON", "0 6 * * *"),
            spend_enabled=_bool(env, "META_SPEND_ENABLED", False),
            spend_lookback_days=_int(env, "META_SPEND_LOOKBACK_DAYS", 3),
            roas_lookback_days=_int(env, "METASPEND_ROAS_LOOKBACK_DAYS", 28, minimum=1),
            token_refresh_cron=_get(env, "META_TOKEN_REFRESH_CRON", "0 5 * * *"),
            token_refresh_enabled=_bool(env, "META_TOKEN_REFRESH_ENABLED", False),
            token_refresh_within_days=_int(env, "META_TOKEN_REFRESH_WITHIN_DAYS", 7, minimum=1),
            schedule_timezone=_get(env, "METASPEND_SCHEDULE_TIMEZONE", "UTC"),
            fetch_window_days=_int(env, "META_FETCH_WINDOW_DAYS", 92, minimum=1),
            freshness_deadline_cron=_get(env, "METASPEND_FRESHNESS_DEADLINE_CRON", "0 9 * * *"),
            objects_refresh_hours=_float(env, "META_OBJECTS_REFRESH_HOURS", 24.0),
            fetch_concurrency=_int(env, "META_FETCH_CONCURRENCY", 4, minimum=1),
            spend_shards=_int(env, "META_SPEND_SHARDS", 1, minimum=1),
            attribution_gap_warn=_attribution_gap_warn(env),
            dagster_url=_get(env, "METASPEND_DAGSTER_URL", DAGSTER_URL),
            breakdowns=_choices(env, "META_BREAKDOWNS", tuple(BREAKDOWN_SETS), BREAKDOWN_SETS),
            breakdown_levels=_nonempty(
                _choices(env, "META_BREAKDOWN_LEVELS", ("campaign",), BREAKDOWN_LEVELS), "META_BREAKDOWN_LEVELS"
            ),
            reach_levels=_nonempty(
                _choices(env, "META_REACH_LEVELS", ("campaign", "adset"), REACH_LEVELS), "META_REACH_LEVELS"
            ),
        )


@dataclass(frozen=True)
class MetaApiSettings:
    """How the client talks to Meta's Graph API: where, as whom, and how patiently."""

    graph_api_url: str = GRAPH_API_URL
    api_version: str = DEFAULT_VERSION  # see meta/versions.py: why this one, and when it expires
    app_id: str | None = None
    app_secret: str | None = field(default=None, repr=False)
    timeout_seconds: float = 60.0
    max_retries: int = 3
    retry_base_delay: float = 2.0
    retry_max_wait: float = 900.0
    retry_budget_seconds: float = 3600.0
    page_size: int = 500
    usage_slowdown_pct: float = 85.0
    usage_window_seconds: float = 3600.0
    async_min_days: int = 8
    async_poll_initial: float = 2.0
    async_poll_max: float = 60.0
    async_timeout_seconds: float = 3600.0
    # asked for beside the `value` under the ad account's own setting (stored as window `default`)
    attribution_windows: tuple[str, ...] = ("7d_click", "1d_view")

    @property
    def base_url(self) -> str:
        return f"{self.graph_api_url.rstrip('/')}/{self.api_version}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MetaApiSettings:
        env = os.environ if env is None else env
        return cls(
            graph_api_url=_graph_api_url(env),
            api_version=_api_version(env),
            app_id=env.get("META_APP_ID") or None,
            app_secret=(env.get("META_APP_SECRET") or "").strip() or None,
            timeout_seconds=_float(env, "META_HTTP_TIMEOUT_SECONDS", cls.timeout_seconds, minimum=0.1),
            max_retries=_int(env, "META_MAX_RETRIES", cls.max_retries),
            retry_base_delay=_float(env, "META_RETRY_BASE_DELAY_SECONDS", cls.retry_base_delay),
            retry_max_wait=_float(env, "META_RETRY_MAX_WAIT_SECONDS", cls.retry_max_wait),
            retry_budget_seconds=_float(env, "META_RETRY_BUDGET_SECONDS", cls.retry_budget_seconds),
            page_size=_int(env, "META_PAGE_SIZE", cls.page_size, minimum=1),
            usage_slowdown_pct=_float(env, "META_USAGE_SLOWDOWN_PCT", cls.usage_slowdown_pct),
            usage_window_seconds=_float(env, "META_USAGE_WINDOW_SECONDS", cls.usage_window_seconds, minimum=1),
            async_min_days=_int(env, "META_ASYNC_MIN_DAYS", cls.async_min_days, minimum=1),
            async_poll_initial=_float(env, "META_ASYNC_POLL_INITIAL_SECONDS", cls.async_poll_initial),
            async_poll_max=_float(env, "META_ASYNC_POLL_MAX_SECONDS", cls.async_poll_max),
            async_timeout_seconds=_float(env, "META_ASYNC_TIMEOUT_SECONDS", cls.async_timeout_seconds),
            attribution_windows=_attribution_windows(env),
        )


@dataclass(frozen=True)
class AnomalySettings:
    """Thresholds of the spend anomaly checks (warnings), read from the environment when they run."""

    stopped_days: int = 7
    spike_ratio: Decimal = Decimal("5")
    drop_ratio: Decimal = Decimal("0.2")
    median_days: int = 28
    min_history_days: int = 7

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AnomalySettings:
        env = os.environ if env is None else env
        spike_ratio = _decimal(env, "METASPEND_ANOMALY_SPIKE_RATIO", cls.spike_ratio)
        if spike_ratio <= 1:
            raise SettingsError(f"METASPEND_ANOMALY_SPIKE_RATIO must be more than 1, got {spike_ratio}")
        drop_ratio = _decimal(env, "METASPEND_ANOMALY_DROP_RATIO", cls.drop_ratio)
        if not 0 <= drop_ratio < 1:
            raise SettingsError(f"METASPEND_ANOMALY_DROP_RATIO must be at least 0 and less than 1, got {drop_ratio}")
        median_days = _int(env, "METASPEND_ANOMALY_MEDIAN_DAYS", cls.median_days, minimum=1)
        min_history_days = _int(env, "METASPEND_ANOMALY_MIN_HISTORY_DAYS", cls.min_history_days, minimum=1)
        if min_history_days > median_days:
            raise SettingsError(
                f"METASPEND_ANOMALY_MIN_HISTORY_DAYS ({min_history_days}) must be at most "
                f"METASPEND_ANOMALY_MEDIAN_DAYS ({median_days})"
            )
        return cls(
            stopped_days=_int(env, "METASPEND_ANOMALY_STOPPED_DAYS", cls.stopped_days, minimum=1),
            spike_ratio=spike_ratio,
            drop_ratio=drop_ratio,
            median_days=median_days,
            min_history_days=min_history_days,
        )

    @property
    def lookback_days(self) -> int:
        """Days before a checked day that the checks read: the longer of the two histories."""
        return max(self.stopped_days, self.median_days)
