"""What Meta's Graph API gives the pipeline, once parsed: insight rows, their conversions, campaigns,
ad sets and ads, ad accounts and tokens. Plain data; storage and the client both import it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

LEVELS = ("account", "campaign", "adset", "ad")
ID_FIELDS: Mapping[str, tuple[str, ...]] = {
    "account": (),
    "campaign": ("campaign_id",),
    "adset": ("campaign_id", "adset_id"),
    "ad": ("campaign_id", "adset_id", "ad_id"),
}
# Every effective status, so archived and deleted objects are included and totals match Ads Manager.
EFFECTIVE_STATUSES = (
    "ACTIVE",
    "PAUSED",
    "DELETED",
    "ARCHIVED",
    "PENDING_REVIEW",
    "DISAPPROVED",
    "PREAPPROVED",
    "PENDING_BILLING_INFO",
    "CAMPAIGN_PAUSED",
    "ADSET_PAUSED",
    "IN_PROCESS",
    "WITH_ISSUES",
)
_OBJECT_COMMON = ("id", "name", "status", "effective_status", "created_time", "updated_time")
OBJECT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "campaign": (*_OBJECT_COMMON, "objective"),
    "adset": (*_OBJECT_COMMON, "campaign_id"),
    "ad": (*_OBJECT_COMMON, "campaign_id", "adset_id"),
}
# Meta's conversions, in the same requests as spend: counts, values (ad account's currency), ratio
CONVERSION_FIELDS = ("actions", "action_values", "purchase_roas")
# The window of Meta's `value` key: the ad account's own attribution setting, as Ads Manager shows it
DEFAULT_WINDOW = "default"
# The breakdown sets the pipeline stores, each Meta's `breakdowns` fields in the order they are stored
BREAKDOWN_SETS: Mapping[str, tuple[str, ...]] = {
    "age_gender": ("age", "gender"),
    "country": ("country",),
    "placement": ("publisher_platform", "platform_position", "device_platform"),
}


@dataclass(frozen=True, slots=True)
class InsightRow:
    """One day of one object, parsed and validated; `raw` is the row exactly as Meta sent it."""

    ad_account_id: str
    level: str
    date: dt.date
    campaign_id: str | None
    adset_id: str | None
    ad_id: str | None
    currency: str
    spend: Decimal
    impressions: int | None
    clicks: int | None
    raw: Mapping[str, Any] = field(repr=False)
    conversions: tuple[Conversion, ...] = field(default=(), repr=False)
    # a breakdown row's values, in its set's order (BREAKDOWN_SETS): ("25-34", "female"); () otherwise
    breakdown: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReachRow:
    """One object's unique reach over a whole period (a week, a month), as Meta counts it: never a
    sum of days or of children. `frequency` is Meta's figure (impressions / reach)."""

    ad_account_id: str
    level: str
    period_start: dt.date
    period_end: dt.date
    campaign_id: str | None
    adset_id: str | None
    ad_id: str | None
    currency: str
    reach: int
    frequency: Decimal
    impressions: int
    spend: Decimal
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Conversion:
    """One action type under one attribution window of one insight row: its count (`actions`)
    and its value (`action_values`), either None when Meta sent only the other."""

    action_type: str
    attribution_window: str  # DEFAULT_WINDOW for Meta's `value`, else one of ATTRIBUTION_WINDOWS
    count: int | None
    value: Decimal | None


@dataclass(frozen=True, slots=True)
class MetaObject:
    """A campaign, ad set or ad as Meta describes it now; parents are None where they do not apply."""

    ad_account_id: str
    kind: str  # campaign, adset or ad
    id: str
    name: str
    status: str
    effective_status: str
    objective: str | None
    campaign_id: str | None
    adset_id: str | None
    created_time: dt.datetime | None
    updated_time: dt.datetime | None


@dataclass(frozen=True)
class AdAccount:
    id: str
    name: str | None
    currency: str
    timezone_name: str
    timezone_offset_hours_utc: Decimal | None
    account_status: int | None


@dataclass(frozen=True)
class TokenInfo:
    is_valid: bool
    expires_at: dt.datetime | None
    data_access_expires_at: dt.datetime | None
    scopes: tuple[str, ...]
    app_id: str | None
    type: str | None
    user_id: str | None


@dataclass(frozen=True)
class ExchangedToken:
    access_token: str = field(repr=False)
    token_type: str | None = None
    expires_at: dt.datetime | None = None
