"""The sandbox's data: organizations, ad accounts, campaigns, ad sets and ads, and their spend.

Everything derives from a seed, so two sandboxes with the same seed serve the same numbers and
tests can ask the sandbox for the truth instead of copying numbers from an earlier run. Daily
numbers are computed on demand from a hash of (seed, ad, day): nothing is held per row, so a
sandbox serving a year of a large account stays small.

Ad-level numbers are the ground truth; ad set, campaign and account rows are their sums, so the
levels always reconcile. Conversions (purchases with their value, leads) are modelled per ad and
day under each of Meta's attribution windows (1d_click <= 7d_click <= 28d_click, 1d_view, 1d_ev);
Meta's `value` is the ad account's own attribution setting, which differs between accounts. A large share of the spend (a third to most of it, per account) is on archived or deleted objects, which Meta
(and the sandbox) leave out unless asked for with an effective-status filter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

# How "bad" a status is when a parent's status overrides a child's.
_RANK = {"ACTIVE": 0, "PAUSED": 1, "ARCHIVED": 2, "DELETED": 3}
DEFAULT_VISIBLE = frozenset(
    {
        "ACTIVE",
        "PAUSED",
        "CAMPAIGN_PAUSED",
        "ADSET_PAUSED",
        "PENDING_REVIEW",
        "DISAPPROVED",
        "PREAPPROVED",
        "PENDING_BILLING_INFO",
        "IN_PROCESS",
        "WITH_ISSUES",
    }
)
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "CLP", "VND", "ISK"})


def _effective(own: str, campaign: str | None = None, adset: str | None = None) -> str:
    """Meta's effective status: a deleted or archived parent wins; a paused parent pauses."""
    worst = max((s for s in (own, campaign, adset) if s), key=lambda s: _RANK[s])
    if worst in ("ARCHIVED", "DELETED"):
        return worst
    if campaign == "PAUSED":
        return "CAMPAIGN_PAUSED"
    if adset == "PAUSED":
        return "ADSET_PAUSED"
    return own


@dataclass(frozen=True)
class Campaign:
    id: str
    status: str
    name: str = ""
    objective: str = "OUTCOME_SALES"
    created_time: str = ""  # as Meta writes it: 2026-01-15T10:00:00-0800, in the ad account's zone
    updated_time: str = ""

    @property
    def effective_status(self) -> str:
        return _effective(self.status)


@dataclass(frozen=True)
class AdSet:
    id: str
    campaign: Campaign
    status: str
    name: str = ""
    created_time: str = ""
    updated_time: str = ""

    @property
    def effective_status(self) -> str:
        return _effective(self.status, self.campaign.status)


@dataclass(frozen=True)
class Ad:
    id: str
    adset: AdSet
    status: str
    base_minor: int  # typical daily spend in the currency's minor unit
    name: str = ""
    created_time: str = ""
    updated_time: str = ""

    @property
    def campaign(self) -> Campaign:
        return self.adset.campaign

    @property
    def effective_status(self) -> str:
        return _effective(self.status, self.adset.campaign.status, self.adset.status)


@dataclass(frozen=True)
class SandboxAdAccount:
    id: str  # act_<digits>
    name: str
    currency: str
    timezone_name: str
    timezone_offset_hours_utc: Decimal
    campaigns: tuple[Campaign, ...]
    adsets: tuple[AdSet, ...]
    ads: tuple[Ad, ...]
    # the windows Meta's `value` sums under the account's own attribution setting
    attribution_setting: tuple[str, ...] = ("7d_click", "1d_view")

    @property
    def account_id(self) -> str:
        return self.id.removeprefix("act_")

    @property
    def minor_digits(self) -> int:
        return 0 if self.currency in ZERO_DECIMAL_CURRENCIES else 2


@dataclass(frozen=True)
class SandboxOrganization:
    organization_id: str
    token: str = field(repr=False)
    ad_accounts: tuple[str, ...]
    provider: str = "INSTAGRAM"


@dataclass(frozen=True)
class Delivery:
    """One ad's numbers on one day (only days with delivery exist)."""

    ad: Ad
    date: dt.date
    spend_minor: int
    impressions: int
    clicks: int


# Meta's conversions: the same event under several action types, with the same numbers
PURCHASE_TYPES = ("omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase")
LEAD_TYPES = ("lead", "onsite_conversion.lead_grouped", "offsite_conversion.fb_pixel_lead")
EVENT_TYPES = {"purchase": PURCHASE_TYPES, "lead": LEAD_TYPES}
WINDOWS = ("1d_click", "7d_click", "28d_click", "1d_view", "1d_ev")
DEFAULT_ATTRIBUTION = ("7d_click", "1d_view")
# (event, window) -> [count, value in minor units]; leads have no value
ConversionSums = dict[tuple[str, str], list[int]]


OBJECTIVES = (
    "OUTCOME_SALES",
    "OUTCOME_LEADS",
    "OUTCOME_TRAFFIC",
    "OUTCOME_AWARENESS",
    "OUTCOME_ENGAGEMENT",
    "OUTCOME_APP_PROMOTION",
)
REGIONS = {"USD": "US", "EUR": "DE", "BRL": "BR", "INR": "IN", "JPY": "JP"}
CAMPAIGN_THEMES = ("Spring Sale", "Summer Launch", "Back to School", "Black Friday", "Holiday Gifts", "Evergreen")
CAMPAIGN_THEMES_PT = ("Liquidação de Verão", "Dia das Mães", "Black Friday", "Volta às Aulas")
FUNNELS = ("Prospecting", "Retargeting", "Lookalike 1%", "Brand Awareness")
ADSET_NAMES = (
    "Women 25-34 - Advantage+ placements",
    "Men 18-24 - Feeds",
    "All genders 35-44 - Stories & Reels",
    "Interests: Fitness - Broad",
    "Lookalike purchasers 1%",
    "Website visitors 30d",
)
AD_NAMES = ("Video - UGC testimonial", "Carousel - Best sellers", "Single image - 20% off", "Video - Product demo")
_EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
DASH = "\N{EN DASH}"  # "US Spring Sale <en dash> Prospecting", as advertisers write: names are not ASCII


def _meta_time(moment: dt.datetime, offset_hours: Decimal) -> str:
    """A time as Meta writes it: ISO 8601 with a +HHMM offset, in the ad account's zone."""
    zone = dt.timezone(dt.timedelta(hours=float(offset_hours)))
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S%z")


# Ad accounts whose advertiser changed the attribution setting (the others have Meta's default)
_ATTRIBUTION_SETTINGS = {"act_1000000002": ("1d_click",), "act_3000000002": ("28d_click", "1d_view")}

# id prefix, name, currency, time zone, offset, campaigns, ad sets per campaign, ads per ad set
_ACCOUNT_SHAPES = (
    ("1000000001", "Demo US", "USD", "America/Los_Angeles", Decimal("-8"), 3, 2, 3),
    ("1000000002", "Demo EU", "EUR", "Europe/Berlin", Decimal("1"), 2, 2, 2),
    ("2000000001", "Demo Brasil", "BRL", "America/Sao_Paulo", Decimal("-3"), 3, 2, 2),
    ("3000000001", "Demo India", "INR", "Asia/Kolkata", Decimal("5.5"), 2, 2, 2),
    ("3000000002", "Demo Japan", "JPY", "Asia/Tokyo", Decimal("9"), 2, 1, 3),
)
_ORGANIZATIONS = (
    ("demo-org-1", ("act_1000000001", "act_1000000002")),
    ("demo-org-2", ("act_2000000001",)),
    ("demo-org-3", ("act_3000000001", "act_3000000002")),
)
BENCH_ACCOUNT = "act_9000000001"
BENCH_ORGANIZATION = "bench-org"
BENCH_ACCOUNTS_ADS = 200  # ads in each of the `bench_accounts` accounts unless `bench_ads` says otherwise


def bench_account_id(number: int) -> str:
    """The `number`th (1-based) of the many benchmark ad accounts."""
    return f"act_91{number:08d}"


def bench_organization_id(number: int) -> str:
    return f"bench-org-{number:03d}"


class World:
    """The sandbox's organizations and their ad accounts, derived from `seed`."""

    def __init__(self, seed: int = 0, *, bench_ads: int = 0, bench_accounts: int = 0) -> None:
        self.seed = seed
        self.accounts: dict[str, SandboxAdAccount] = {}
        for prefix, name, currency, zone, offset, campaigns, adsets, ads in _ACCOUNT_SHAPES:
            self._add_account(f"act_{prefix}", name, currency, zone, offset, campaigns, adsets, ads)
        organizations = list(_ORGANIZATIONS)
        if bench_ads:
            per_adset = 10
            adsets = max(1, bench_ads // per_adset)
            self._add_account(BENCH_ACCOUNT, "Benchmark", "USD", "UTC", Decimal("0"), max(1, adsets // 5), 5, per_adset)
            organizations.append((BENCH_ORGANIZATION, (BENCH_ACCOUNT,)))
        # many accounts of the same shape, one organization each, after (and apart from) the others
        ads = bench_ads or BENCH_ACCOUNTS_ADS
        for number in range(1, bench_accounts + 1):
            account = bench_account_id(number)
            adsets = max(1, ads // 10)
            self._add_account(account, f"Benchmark {number}", "USD", "UTC", Decimal("0"), max(1, adsets // 5), 5, 10)
            organizations.append((bench_organization_id(number), (account,)))
        self.organizations = tuple(
            SandboxOrganization(org, self._token_for(org), tuple(accounts)) for org, accounts in organizations
        )
        self._ad_accounts = {ad.id: a.id for a in self.accounts.values() for ad in a.ads}

    # --- construction ------------------------------------------------------------------------

    def _hash(self, *parts: object) -> int:
        text = ":".join(str(p) for p in (self.seed, *parts)).encode()
        return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")

    def _token_for(self, organization_id: str) -> str:
        return "EAAsbx" + hashlib.sha256(f"{self.seed}:{organization_id}".encode()).hexdigest()[:40]

    def _status(self, *parts: object, weights: tuple[int, int, int, int]) -> str:
        pick = self._hash("status", *parts) % sum(weights)
        for status, weight in zip(("ACTIVE", "PAUSED", "ARCHIVED", "DELETED"), weights, strict=True):
            if pick < weight:
                return status
            pick -= weight
        return "ACTIVE"

    def _add_account(
        self,
        account: str,
        name: str,
        currency: str,
        zone: str,
        offset: Decimal,
        n_campaigns: int,
        n_adsets: int,
        n_ads: int,
    ) -> None:
        digits = account.removeprefix("act_")
        scale = 100 if currency in ZERO_DECIMAL_CURRENCIES else 1
        campaigns, adsets, ads = [], [], []
        for c in range(n_campaigns):
            # the last campaign of every account is archived or deleted: its spend is the part a
            # fetch without the status filter silently loses
            if c == n_campaigns - 1 and n_campaigns > 1:
                status = "DELETED" if self._hash("gone", account) % 2 else "ARCHIVED"
            else:
                status = self._status(account, c, weights=(8, 2, 0, 0))
            created = self._created(account, "c", c, after=None)
            campaign = Campaign(
                id=f"{digits[:4]}{c + 1:03d}{self._hash('c', account, c) % 10**6:06d}",
                status=status,
                name=self._campaign_name(account, currency, c),
                objective=OBJECTIVES[self._hash("objective", account, c) % len(OBJECTIVES)],
                created_time=_meta_time(created, offset),
                updated_time=_meta_time(self._updated(created, account, "c", c), offset),
            )
            campaigns.append(campaign)
            for s in range(n_adsets):
                adset_created = self._created(account, "s", c, s, after=created)
                adset = AdSet(
                    id=f"{campaign.id}{s + 1:02d}",
                    campaign=campaign,
                    status=self._status(account, c, s, weights=(8, 1, 1, 0)),
                    name=self._pick(ADSET_NAMES, "adset", account, c, s),
                    created_time=_meta_time(adset_created, offset),
                    updated_time=_meta_time(self._updated(adset_created, account, "s", c, s), offset),
                )
                adsets.append(adset)
                for a in range(n_ads):
                    ad_created = self._created(account, "a", c, s, a, after=adset_created)
                    ads.append(
                        Ad(
                            id=f"{adset.id}{a + 1:03d}",
                            adset=adset,
                            status=self._status(account, c, s, a, weights=(6, 1, 1, 1)),
                            base_minor=(500 + self._hash("base", account, c, s, a) % 9500) * scale,
                            name=f"{self._pick(AD_NAMES, 'ad', account, c, s, a)} #{a + 1}",
                            created_time=_meta_time(ad_created, offset),
                            updated_time=_meta_time(self._updated(ad_created, account, "a", c, s, a), offset),
                        )
                    )
        self.accounts[account] = SandboxAdAccount(
            id=account,
            name=name,
            currency=currency,
            timezone_name=zone,
            timezone_offset_hours_utc=offset,
            campaigns=tuple(campaigns),
            adsets=tuple(adsets),
            ads=tuple(ads),
            attribution_setting=_ATTRIBUTION_SETTINGS.get(account, DEFAULT_ATTRIBUTION),
        )

    # --- names and times ---------------------------------------------------------------------

    def _pick(self, choices: tuple[str, ...], *parts: object) -> str:
        return choices[self._hash("name", *parts) % len(choices)]

    def _campaign_name(self, account: str, currency: str, c: int) -> str:
        themes = CAMPAIGN_THEMES_PT if currency == "BRL" else CAMPAIGN_THEMES
        region = REGIONS.get(currency, "US")
        return f"{region} {self._pick(themes, 'theme', account, c)} {DASH} {self._pick(FUNNELS, 'funnel', account, c)}"

    def _created(self, *parts: object, after: dt.datetime | None) -> dt.datetime:
        """A creation time after the parent's (campaigns: in 2025), to the second."""
        if after is None:
            return _EPOCH + dt.timedelta(seconds=self._hash("created", *parts) % (365 * 86400))
        return after + dt.timedelta(seconds=60 + self._hash("created", *parts) % (3 * 86400))

    def _updated(self, created: dt.datetime, *parts: object) -> dt.datetime:
        return created + dt.timedelta(seconds=self._hash("updated", *parts) % (30 * 86400))

    # --- numbers -----------------------------------------------------------------------------

    def delivery(self, ad: Ad, day: dt.date) -> Delivery | None:
        """The ad's numbers on `day`, or None when it did not deliver (Meta omits such rows)."""
        h = self._hash(ad.id, day.toordinal())
        if h % 5 == 0:
            return None
        spend = ad.base_minor * (50 + (h >> 8) % 101) // 100
        impressions = spend * (2 + (h >> 16) % 7) // 10 + 1
        clicks = impressions * (5 + (h >> 24) % 26) // 1000
        return Delivery(ad=ad, date=day, spend_minor=spend, impressions=impressions, clicks=clicks)

    def conversions(self, d: Delivery) -> ConversionSums:
        """The ad's purchases (and their value) and leads on its delivery day, per window; zeros
        left out. Clicks within 1 day are within 7 and 28 days too; views are counted apart."""
        h = self._hash("conversions", d.ad.id, d.date.toordinal())
        out: ConversionSums = {}
        # a purchase is worth 300 to 900 units (dollars, euros); in zero-decimal currencies 100 times
        # as many minor units, as the sandbox's spend is, so ROAS is alike in every currency
        scale = 100 * (100 if self.accounts[self._account_of(d.ad)].minor_digits == 0 else 1)
        for event, share, shift in (("purchase", 2, 0), ("lead", 3, 32)):
            g = h >> shift
            if g % 10 >= share:
                continue
            click_1d = (g >> 4) % 3
            click_7d = click_1d + (g >> 6) % 3
            click_28d = click_7d + (g >> 8) % 2
            view_1d = (g >> 10) % 3
            engaged_1d = (g >> 12) % 2
            ticket = (300 + (g >> 14) % 601) * scale if event == "purchase" else 0
            counts = dict(zip(WINDOWS, (click_1d, click_7d, click_28d, view_1d, engaged_1d), strict=True))
            for window, count in counts.items():
                if count:
                    out[(event, window)] = [count, count * ticket]
        return out

    def _account_of(self, ad: Ad) -> str:
        return self._ad_accounts[ad.id]

    def deliveries(self, account: str, days: Iterable[dt.date]) -> Iterator[Delivery]:
        ads = self.accounts[account].ads
        for day in days:
            for ad in ads:
                found = self.delivery(ad, day)
                if found is not None:
                    yield found

    def format_amount(self, account: str, minor: int) -> str:
        digits = self.accounts[account].minor_digits
        if digits == 0:
            return str(minor)
        return f"{minor // 100}.{minor % 100:02d}"

    def truth(self, account: str, level: str, since: dt.date, until: dt.date) -> list[dict[str, object]]:
        """The rows a complete, correct daily fetch must produce: every status, no zero rows."""
        rows = aggregate(self, account, level, since, until, statuses=None)
        return [
            {
                "date": key[0].isoformat(),
                "campaign_id": key[1],
                "adset_id": key[2],
                "ad_id": key[3],
                "currency": self.accounts[account].currency,
                "spend": self.format_amount(account, value[0]),
                "impressions": value[1],
                "clicks": value[2],
            }
            for key, value in rows.items()
        ]

    def conversion_truth(
        self,
        account: str,
        level: str,
        since: dt.date,
        until: dt.date,
        windows: Iterable[str] = DEFAULT_ATTRIBUTION,
    ) -> list[dict[str, object]]:
        """The `meta_conversions_daily` rows a correct fetch asking for `windows` (with the unified
        attribution setting) must produce: per day, object, action type and window, with window
        `default` for the ad account's own setting; count and value (None for leads) as text."""
        sandbox_account = self.accounts[account]
        asked = [w for w in WINDOWS if w in set(windows)]
        rows: list[dict[str, object]] = []
        sums = aggregate_conversions(self, account, level, since, until, statuses=None)
        for (day, campaign_id, adset_id, ad_id), by_window in sums.items():
            for event, types in EVENT_TYPES.items():
                default = [0, 0]
                for window in sandbox_account.attribution_setting:
                    count, value = by_window.get((event, window), (0, 0))
                    default = [default[0] + count, default[1] + value]
                present = {w: by_window[(event, w)] for w in asked if (event, w) in by_window}
                if not default[0] and not present:
                    continue  # Meta leaves the action type out
                for action_type in types:
                    for window, (count, value) in [("default", default), *present.items()]:
                        rows.append(
                            {
                                "date": day.isoformat() if day else None,
                                "campaign_id": campaign_id,
                                "adset_id": adset_id,
                                "ad_id": ad_id,
                                "currency": sandbox_account.currency,
                                "action_type": action_type,
                                "attribution_window": window,
                                "count": count,
                                "value": self.format_amount(account, value) if event == "purchase" else None,
                            }
                        )
        return rows


def _days(since: dt.date, until: dt.date) -> Iterator[dt.date]:
    day = since
    while day <= until:
        yield day
        day += dt.timedelta(days=1)


Key = tuple[dt.date | None, str | None, str | None, str | None]


def aggregate(
    world: World,
    account: str,
    level: str,
    since: dt.date,
    until: dt.date,
    statuses: frozenset[str] | None,
    daily: bool = True,
) -> dict[Key, list[int]]:
    """Sums of (spend, impressions, clicks) per day and object of `level`.

    `statuses` is the effective-status filter of the request at that level (None: every
    status). The account level always sums every ad, as Ads Manager's account total does.
    """
    out: dict[Key, list[int]] = {}
    for d in world.deliveries(account, _days(since, until)):
        key = _level_key(d, level, statuses, daily)
        if key is None:
            continue
        sums = out.setdefault(key, [0, 0, 0])
        sums[0] += d.spend_minor
        sums[1] += d.impressions
        sums[2] += d.clicks
    return out  # in day order, then in the order of the account's ads


def _level_key(d: Delivery, level: str, statuses: frozenset[str] | None, daily: bool) -> Key | None:
    """The row of `level` the delivery adds to; None when the status filter hides it."""
    ad = d.ad
    if level == "account":
        obj_status, ids = None, (None, None, None)
    elif level == "campaign":
        obj_status, ids = ad.campaign.effective_status, (ad.campaign.id, None, None)
    elif level == "adset":
        obj_status, ids = ad.adset.effective_status, (ad.campaign.id, ad.adset.id, None)
    else:
        obj_status, ids = ad.effective_status, (ad.campaign.id, ad.adset.id, ad.id)
    if statuses is not None and obj_status is not None and obj_status not in statuses:
        return None
    return (d.date if daily else None, *ids)


def aggregate_conversions(
    world: World,
    account: str,
    level: str,
    since: dt.date,
    until: dt.date,
    statuses: frozenset[str] | None,
    daily: bool = True,
) -> dict[Key, ConversionSums]:
    """Sums of the ads' conversions per day and object of `level`, as `aggregate` sums spend."""
    out: dict[Key, ConversionSums] = {}
    for d in world.deliveries(account, _days(since, until)):
        key = _level_key(d, level, statuses, daily)
        if key is None:
            continue
        sums = out.setdefault(key, {})
        for name, (count, value) in world.conversions(d).items():
            total = sums.setdefault(name, [0, 0])
            total[0] += count
            total[1] += value
    return out
