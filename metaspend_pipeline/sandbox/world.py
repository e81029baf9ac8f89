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

Breakdowns (`BREAKDOWN_SETS`: age and gender, country, placement) split each ad-day's spend (in
minor units), impressions and clicks exactly among the values of the set: weights from the set's
typical mix (the account's home country most, its neighbours less; Facebook feed and Instagram
stream most), narrowed by the targeting an ad set's name says ("Women 25-34 - ...", "... - Feeds",
"... - Stories & Reels"; unknown age and gender stay), skewed per ad and jittered per day from a hash,
then shared out by cumulative flooring, so the parts add up to the ad-day and, summed like the
unbroken rows, to every parent's day. Spend is weighted by each value's cost per impression, clicks
by its click rate and never above its impressions; parts with neither spend nor impressions are
left out. The smaller combinations Meta accepts (age alone, publisher_platform alone, ...) are sums
of the full set's parts.

Reach: every ad has a pool of people, an interval of person ids; the ads of an ad set draw theirs from
one region (they share most of their audience), neighbouring ad sets' regions of a campaign overlap
partly, campaigns are apart. On a delivery day an ad reaches an interval of its pool (wrapping at
its end) of impressions / a daily frequency of 1.05 to 1.60 people, shifted a few percent of the pool
each day, so consecutive days overlap. An object's reach over a period is the size of the union of
its ads' intervals over the period's days: at most its impressions, less than the sum of its days'
or its children's reach. With breakdowns, a row's reach is its object-period's reach shared out in
proportion to the row's impressions (at least 1 where it has impressions): a model, not a count.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

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


class _Profile(NamedTuple):
    """An ad's breakdown values of one set, with its weights: share of impressions (its set's mix,
    skewed for the ad), cost per impression and click rate (percent)."""

    values: tuple[tuple[str, ...], ...]
    weights: tuple[int, ...]
    cpm: tuple[int, ...]
    ctr: tuple[int, ...]


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


# --- breakdowns and reach: the tables -----------------------------------------------------------

# The breakdown sets the pipeline fetches, by its names, and their fields (Meta's names, in order)
BREAKDOWN_SETS: dict[str, tuple[str, ...]] = {
    "age_gender": ("age", "gender"),
    "country": ("country",),
    "placement": ("publisher_platform", "platform_position", "device_platform"),
}
# The combinations insights accept, in any order: a whole set or these parts of one
BREAKDOWN_COMBINATIONS = frozenset(
    frozenset(fields)
    for fields in (
        *BREAKDOWN_SETS.values(),
        ("age",),
        ("gender",),
        ("publisher_platform",),
        ("publisher_platform", "platform_position"),
        ("device_platform",),
    )
)
BREAKDOWN_FIELDS = tuple(f for fields in BREAKDOWN_SETS.values() for f in fields)
UNIQUE_FIELDS = ("reach", "frequency")  # Meta's unique counts: they do not add up

# value -> (share of impressions, cost per impression %, click rate %)
AGES = {
    "18-24": (14, 85, 120),
    "25-34": (30, 100, 110),
    "35-44": (24, 105, 100),
    "45-54": (15, 110, 95),
    "55-64": (9, 115, 90),
    "65+": (6, 120, 85),
    "Unknown": (1, 100, 100),
}
GENDERS = {"female": (48, 105, 105), "male": (48, 95, 95), "unknown": (4, 100, 100)}
# per home country (REGIONS): (country, share of impressions, cost per impression %); clicks alike
COUNTRIES = {
    "US": (("US", 82, 100), ("CA", 8, 90), ("MX", 4, 40), ("GB", 3, 95), ("unknown", 1, 100)),
    "DE": (
        ("DE", 60, 100),
        ("AT", 12, 95),
        ("CH", 9, 130),
        ("NL", 7, 100),
        ("FR", 6, 90),
        ("PL", 4, 50),
        ("unknown", 1, 100),
    ),
    "BR": (("BR", 88, 100), ("PT", 5, 150), ("AR", 3, 70), ("PY", 2, 60), ("UY", 1, 80), ("unknown", 1, 100)),
    "IN": (("IN", 86, 100), ("AE", 5, 300), ("BD", 3, 60), ("NP", 2, 60), ("LK", 2, 70), ("unknown", 1, 100)),
    "JP": (("JP", 90, 100), ("KR", 4, 90), ("TW", 3, 80), ("US", 2, 150), ("unknown", 1, 100)),
}
# (publisher_platform, platform_position, device_platform, share, cost per impression %, click rate %):
# positions belong to their platform; desktop only where the position exists on a computer
PLACEMENTS = (
    ("facebook", "feed", "mobile_app", 250, 100, 100),
    ("facebook", "feed", "mobile_web", 20, 90, 80),
    ("facebook", "feed", "desktop", 50, 120, 90),
    ("facebook", "facebook_stories", "mobile_app", 60, 80, 70),
    ("facebook", "facebook_reels", "mobile_app", 80, 70, 60),
    ("facebook", "marketplace", "mobile_app", 40, 80, 90),
    ("facebook", "marketplace", "desktop", 10, 90, 80),
    ("facebook", "right_hand_column", "desktop", 10, 40, 40),
    ("facebook", "search", "mobile_app", 10, 110, 150),
    ("facebook", "search", "desktop", 5, 110, 150),
    ("instagram", "stream", "mobile_app", 180, 120, 90),
    ("instagram", "stream", "desktop", 5, 110, 80),
    ("instagram", "instagram_stories", "mobile_app", 100, 100, 70),
    ("instagram", "instagram_reels", "mobile_app", 120, 90, 70),
    ("instagram", "instagram_explore", "mobile_app", 30, 100, 80),
    ("audience_network", "an_classic", "mobile_app", 30, 40, 130),
    ("audience_network", "an_classic", "mobile_web", 10, 35, 110),
    ("audience_network", "rewarded_video", "mobile_app", 20, 50, 140),
    ("messenger", "messenger_inbox", "mobile_app", 10, 60, 60),
    ("messenger", "messenger_inbox", "desktop", 3, 60, 50),
    ("messenger", "messenger_stories", "mobile_app", 5, 60, 50),
)
_FEEDS = frozenset({"feed", "stream", "marketplace", "right_hand_column", "instagram_explore", "messenger_inbox"})
_STORIES_REELS = frozenset(
    {"facebook_stories", "facebook_reels", "instagram_stories", "instagram_reels", "messenger_stories"}
)
# what an ad set's name says it targets: (ages, genders, positions); None targets all
_TARGETING: dict[str, tuple[frozenset[str] | None, frozenset[str] | None, frozenset[str] | None]] = {
    "Women 25-34 - Advantage+ placements": (frozenset({"25-34"}), frozenset({"female"}), None),
    "Men 18-24 - Feeds": (frozenset({"18-24"}), frozenset({"male"}), _FEEDS),
    "All genders 35-44 - Stories & Reels": (frozenset({"35-44"}), None, _STORIES_REELS),
}


_JITTER = tuple(80 + b % 41 for b in range(256))  # a hash byte as a day's move of a share, in percent


def breakdown_set(fields: Iterable[str]) -> str:
    """The name of the breakdown set a combination of breakdown fields belongs to."""
    wanted = set(fields)
    return next(name for name, full in BREAKDOWN_SETS.items() if wanted <= set(full))


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
        # per ad, computed when first asked for: its breakdown weights, its audience pool
        self._profiles: dict[tuple[str, str], _Profile] = {}
        self._audiences: dict[str, tuple[int, int, int, int]] = {}

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

    # --- breakdowns and reach ---------------------------------------------------------------

    def _bytes(self, *parts: object) -> bytes:
        """64 bytes from a hash of (seed, parts): one for each of up to 64 breakdown values."""
        text = ":".join(str(p) for p in (self.seed, *parts)).encode()
        return hashlib.blake2b(text, digest_size=64).digest()

    def _profile(self, name: str, ad: Ad) -> _Profile:
        """The breakdown values of set `name` the ad can deliver to, and their weights."""
        found = self._profiles.get((name, ad.id))
        if found is not None:
            return found
        ages, genders, positions = _TARGETING.get(ad.adset.name, (None, None, None))
        rows: list[tuple[tuple[str, ...], int, int, int]] = []
        if name == "age_gender":
            for age, (a_share, a_cpm, a_ctr) in AGES.items():
                if ages is not None and age not in ages and age != "Unknown":
                    continue
                for gender, (g_share, g_cpm, g_ctr) in GENDERS.items():
                    if genders is not None and gender not in genders and gender != "unknown":
                        continue
                    rows.append(((age, gender), a_share * g_share, a_cpm * g_cpm // 100, a_ctr * g_ctr // 100))
        elif name == "country":
            home = REGIONS.get(self.accounts[self._account_of(ad)].currency, "US")
            for country, share, cpm in COUNTRIES[home]:
                rows.append(((country,), share, cpm, 100 if country == home else 80))
        else:
            for platform, position, device, share, cpm, ctr in PLACEMENTS:
                if positions is None or position in positions:
                    rows.append(((platform, position, device), share, cpm, ctr))
        skew = self._bytes("skew", name, ad.id)
        found = _Profile(
            values=tuple(r[0] for r in rows),
            # each value's share skewed by 0.5 to 1.5 for this ad
            weights=tuple(r[1] * (50 + b % 101) for r, b in zip(rows, skew, strict=False)),
            cpm=tuple(r[2] for r in rows),
            ctr=tuple(r[3] for r in rows),
        )
        self._profiles[(name, ad.id)] = found
        return found

    def breakdown_split(self, d: Delivery, name: str) -> list[tuple[tuple[str, ...], int, int, int]]:
        """The ad-day's (values, spend_minor, impressions, clicks) per value of breakdown set
        `name` (a key of BREAKDOWN_SETS): they add up to the delivery exactly; clicks never
        exceed impressions; parts with neither spend nor impressions are left out."""
        profile = self._profile(name, d.ad)
        jitter = self._bytes("split", name, d.ad.id, d.date.toordinal())
        # each value's share moves by -20% to +20% from day to day (map: this runs per ad-day)
        weights = list(map(operator.mul, profile.weights, map(_JITTER.__getitem__, jitter)))
        impressions = _shares(d.impressions, weights)
        spend = _shares(d.spend_minor, list(map(operator.mul, weights, profile.cpm)))
        clicks = _shares(d.clicks, list(map(operator.mul, impressions, profile.ctr)))
        if any(map(operator.gt, clicks, impressions)):
            _cap(clicks, impressions)
        return [
            (values, s, n, c)
            for values, s, n, c in zip(profile.values, spend, impressions, clicks, strict=True)
            if s or n
        ]

    def _audience(self, ad: Ad) -> tuple[int, int, int, int]:
        """The ad's pool of people (first person id, size), its daily shift and its first offset."""
        found = self._audiences.get(ad.id)
        if found is None:
            self._lay_out_audiences(self._account_of(ad))
            found = self._audiences[ad.id]
        return found

    def _lay_out_audiences(self, account: str) -> None:
        """Every ad's pool in the ad account: the ads of an ad set in one region a quarter larger
        than their largest pool, each ad set's region overlapping the previous one's by 20% to 50%,
        campaigns apart."""
        sandbox_account = self.accounts[account]
        ads_of: dict[str, list[Ad]] = {}
        for ad in sandbox_account.ads:
            ads_of.setdefault(ad.adset.id, []).append(ad)
        adsets_of: dict[str, list[AdSet]] = {}
        for adset in sandbox_account.adsets:
            adsets_of.setdefault(adset.campaign.id, []).append(adset)
        layout: dict[str, tuple[int, int, int, int]] = {}
        start = 0
        for campaign in sandbox_account.campaigns:
            at = end = start
            for adset in adsets_of.get(campaign.id, []):
                ads = ads_of.get(adset.id, [])
                sizes = [max(1, ad.base_minor * (30 + self._hash("pool", ad.id) % 71) // 10) for ad in ads]
                region = max(sizes, default=1) * 5 // 4
                for ad, size in zip(ads, sizes, strict=True):
                    first = at + self._hash("pool-at", ad.id) % (region - size + 1)
                    shift = max(1, size * (2 + self._hash("shift", ad.id) % 5) // 100)
                    layout[ad.id] = (first, size, shift, self._hash("phase", ad.id) % size)
                end = max(end, at + region)
                at += region * (50 + self._hash("overlap", adset.id) % 31) // 100
            start = end + 1000
        self._audiences.update(layout)

    def reach_intervals(self, d: Delivery) -> list[tuple[int, int]]:
        """The people (half-open intervals of person ids) the ad-day reached: impressions / a
        daily frequency of 1.05 to 1.60 of them, at least 1 and never more than its impressions."""
        first, size, shift, phase = self._audience(d.ad)
        frequency = 105 + self._hash("reach", d.ad.id, d.date.toordinal()) % 56  # percent
        reach = min(size, max(1, d.impressions * 100 // frequency))
        offset = (phase + d.date.toordinal() * shift) % size
        if offset + reach <= size:
            return [(first + offset, first + offset + reach)]
        return [(first + offset, first + size), (first, first + offset + reach - size)]

    def format_amount(self, account: str, minor: int) -> str:
        digits = self.accounts[account].minor_digits
        if digits == 0:
            return str(minor)
        return f"{minor // 100}.{minor % 100:02d}"

    def truth(self, account: str, level: str, since: dt.date, until: dt.date) -> list[dict[str, object]]:
        """The rows a complete, correct daily fetch must produce: every status, no zero rows."""
        rows = aggregate(self, account, level, since, until, statuses=None)
        return [self._truth_row(account, key, value) for key, value in rows.items()]

    def _truth_row(
        self, account: str, key: Key, value: list[int], breakdown: dict[str, str] | None = None
    ) -> dict[str, object]:
        """A row of `truth` (with `breakdown`: of `breakdown_truth`): its day, object, breakdown
        values, currency, spend as Meta writes it, impressions and clicks."""
        return {
            "date": key[0].isoformat() if key[0] else None,
            "campaign_id": key[1],
            "adset_id": key[2],
            "ad_id": key[3],
            **(breakdown or {}),
            "currency": self.accounts[account].currency,
            "spend": self.format_amount(account, value[0]),
            "impressions": value[1],
            "clicks": value[2],
        }

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

    def breakdown_truth(
        self, account: str, level: str, since: dt.date, until: dt.date, breakdown: str
    ) -> list[dict[str, object]]:
        """The daily rows broken down by set `breakdown` (a key of BREAKDOWN_SETS, every field of
        it) that a complete fetch with every effective status must produce."""
        fields = BREAKDOWN_SETS[breakdown]
        rows = aggregate_breakdowns(self, account, level, since, until, None, fields)
        return [
            self._truth_row(account, key, value, dict(zip(fields, values, strict=True)))
            for (key, values), value in rows.items()
        ]

    def reach_truth(self, account: str, level: str, since: dt.date, until: dt.date) -> list[dict[str, object]]:
        """Reach and frequency per object of `level` over the whole range (`all_days`), every
        status, with the impressions and spend they go with."""
        sums = aggregate(self, account, level, since, until, statuses=None, daily=False)
        reach = aggregate_reach(self, account, level, since, until, statuses=None, daily=False)
        return [
            {
                "campaign_id": key[1],
                "adset_id": key[2],
                "ad_id": key[3],
                "date_start": since.isoformat(),
                "date_stop": until.isoformat(),
                "currency": self.accounts[account].currency,
                "reach": reach[key],
                "frequency": format_frequency(value[1], reach[key]),
                "impressions": value[1],
                "spend": self.format_amount(account, value[0]),
            }
            for key, value in sums.items()
        ]


def format_frequency(impressions: int, reach: int) -> str:
    """Meta's frequency: impressions / reach, rounded half up to 6 decimals ("1.052632")."""
    if not reach:
        return "0.000000"
    return str((Decimal(impressions) / Decimal(reach)).quantize(Decimal("0.000001"), ROUND_HALF_UP))


def _shares(total: int, weights: list[int]) -> list[int]:
    """`total` shared out in proportion to `weights` by flooring the running sums: the shares add
    up to `total` exactly, and a share is never more than its weight's proportion rounded up."""
    whole = sum(weights)
    if not whole or not total:
        return [0] * len(weights)
    running = [total * r // whole for r in itertools.accumulate(weights)]
    return list(map(operator.sub, running, [0, *running]))


def _cap(clicks: list[int], impressions: list[int]) -> None:
    """Clicks beyond a part's impressions moved to the first parts with room (there is room: the
    clicks of all parts are no more than their impressions)."""
    spare = 0
    for i, n in enumerate(impressions):
        if clicks[i] > n:
            spare += clicks[i] - n
            clicks[i] = n
    for i, n in enumerate(impressions):
        moved = min(spare, n - clicks[i])
        clicks[i] += moved
        spare -= moved


def _union_size(spans: list[tuple[int, int]]) -> int:
    """How many integers the half-open intervals cover together."""
    size, reached = 0, None
    for start, stop in sorted(spans):
        if reached is None or start > reached:
            size += stop - start
            reached = stop
        elif stop > reached:
            size += stop - reached
            reached = stop
    return size


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


BreakdownKey = tuple[Key, tuple[str, ...]]


def _keyed(
    world: World,
    account: str,
    level: str,
    since: dt.date,
    until: dt.date,
    statuses: frozenset[str] | None,
    daily: bool,
) -> Iterator[tuple[Key, Delivery]]:
    """The ad-days of the range with the row of `level` each adds to, those the filter hides left out."""
    for d in world.deliveries(account, _days(since, until)):
        key = _level_key(d, level, statuses, daily)
        if key is not None:
            yield key, d


def aggregate_breakdowns(
    world: World,
    account: str,
    level: str,
    since: dt.date,
    until: dt.date,
    statuses: frozenset[str] | None,
    fields: tuple[str, ...],
    daily: bool = True,
) -> dict[BreakdownKey, list[int]]:
    """Sums of (spend, impressions, clicks) per day, object of `level` and values of the breakdown
    `fields` (an accepted combination, in the order of its set), as `aggregate` sums them unbroken:
    each ad-day is split among the full set's values and the parts are added up."""
    name = breakdown_set(fields)
    picks = [BREAKDOWN_SETS[name].index(f) for f in fields]
    whole_set = picks == list(range(len(BREAKDOWN_SETS[name])))
    parts: dict[tuple[str, ...], tuple[str, ...]] = {}  # a full set's values -> the fields' values
    out: dict[BreakdownKey, list[int]] = {}
    for key, d in _keyed(world, account, level, since, until, statuses, daily):
        for values, spend, impressions, clicks in world.breakdown_split(d, name):
            if whole_set:
                row = (key, values)
            else:
                part = parts.get(values)
                if part is None:
                    part = parts[values] = tuple(values[i] for i in picks)
                row = (key, part)
            sums = out.get(row)
            if sums is None:
                out[row] = [spend, impressions, clicks]
            else:
                sums[0] += spend
                sums[1] += impressions
                sums[2] += clicks
    return out


def aggregate_reach(
    world: World,
    account: str,
    level: str,
    since: dt.date,
    until: dt.date,
    statuses: frozenset[str] | None,
    daily: bool = True,
) -> dict[Key, int]:
    """Reach per day (or, not `daily`, over the range) and object of `level`: the people its ads
    reached on those days, each counted once."""
    spans: dict[Key, list[tuple[int, int]]] = {}
    for key, d in _keyed(world, account, level, since, until, statuses, daily):
        spans.setdefault(key, []).extend(world.reach_intervals(d))
    return {key: _union_size(found) for key, found in spans.items()}


def split_reach(reach: int, impressions: list[int]) -> list[int]:
    """An object-period's reach among its breakdown rows, in proportion to their impressions: at
    least 1 for a row with impressions, never more than them (0 for a row without)."""
    return [max(1, r) if n else 0 for r, n in zip(_shares(reach, impressions), impressions, strict=True)]
