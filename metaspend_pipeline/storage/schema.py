"""The warehouse tables as SQLAlchemy Core objects, for the queries of the package.

The migrations in `migrations/versions` create these tables; a test compares the two so they
cannot drift apart. Table and column names are a contract with BI users: change them only with
a migration and a note in docs/warehouse.md.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

PROVIDERS = ("INSTAGRAM", "FACEBOOK")
ACCOUNT_STATUSES = ("CONNECTED", "NEEDS_REAUTH", "DISCONNECTED")
SPEND_LEVELS = ("CAMPAIGN", "ADSET", "AD")


class Decimal_(sa.types.TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC(precision, scale) on PostgreSQL and on SQLite.

    SQLite has no decimal type: a NUMERIC column stores a binary double, which keeps 15
    significant digits exactly. So on SQLite values are refused past 15 significant digits
    (an error, never a silent rounding), and read back through their shortest representation:
    every value reads back exactly as written, and ORDER BY, comparisons, MIN and MAX are
    numeric. Sums are taken in integer minor units (see `storage.sql.money_sum`).
    """

    impl = sa.Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision, scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)
        self._limit = Decimal(10) ** (precision - scale)

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Numeric(self.precision, self.scale, asdecimal=False))
        return dialect.type_descriptor(sa.Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("money and ratios are Decimal, never float")
        number = exact_decimal(Decimal(value), self.precision, self.scale)
        return sqlite_number(number) if dialect.name == "sqlite" else number

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Decimal | None:
        if value is None:
            return None
        # repr() of a double is its shortest round-tripping form: the decimal that was stored
        return Decimal(repr(value) if isinstance(value, float) else value).quantize(self._quantum)


SQLITE_DIGITS = 15  # significant digits a double keeps exactly


def exact_decimal(number: Decimal, precision: int, scale: int) -> Decimal:
    """`number` as NUMERIC(precision, scale) holds it, or ValueError: never rounded in silence."""
    if not number.is_finite():
        raise ValueError(f"{number} is not a finite number")
    quantized = number.quantize(Decimal(1).scaleb(-scale))
    if quantized != number:
        raise ValueError(f"{number} has more than {scale} decimal places")
    if abs(quantized) >= Decimal(10) ** (precision - scale):
        raise ValueError(f"{number} does not fit NUMERIC({precision}, {scale})")
    return quantized


def sqlite_number(number: Decimal) -> str:
    """A decimal for a SQLite NUMERIC column, refused where a double would not keep it exactly."""
    digits = len(number.normalize().as_tuple().digits) if number else 1
    if digits > SQLITE_DIGITS:
        raise ValueError(
            f"{number} has {digits} significant digits; SQLite keeps {SQLITE_DIGITS} exactly "
            "(use PostgreSQL for larger amounts)"
        )
    return str(number)


Money = Decimal_(18, 2)
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)
# SQLite only autoincrements an INTEGER PRIMARY KEY; everywhere else a bigint identity.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


connected_account = sa.Table(
    "connected_account",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("organization_id", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("ad_accounts", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.CheckConstraint(_in("provider", PROVIDERS), name="provider"),
    sa.CheckConstraint(_in("status", ACCOUNT_STATUSES), name="status"),
    sa.Index("ix_connected_account_organization_id", "organization_id"),
)

oauth_token = sa.Table(
    "oauth_token",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column(
        "connected_account_id",
        sa.Text,
        sa.ForeignKey("connected_account.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("access_token_encrypted", sa.Text, nullable=False),
    sa.Column("token_type", sa.Text, nullable=True),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("last_refreshed_at", Timestamp, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_oauth_token_connected_account_id", "connected_account_id"),
)

# When each ad account was first connected to its organization (migration 0007), whatever connected
# account lists it now: the check every_ad_account_loaded expects its days from then on, not before.
connected_ad_account = sa.Table(
    "connected_ad_account",
    metadata,
    sa.Column("organization_id", sa.Text, nullable=False),
    sa.Column("ad_account_id", sa.Text, nullable=False),
    sa.Column("first_connected_at", Timestamp, nullable=False),
    sa.PrimaryKeyConstraint("organization_id", "ad_account_id", name="pk_connected_ad_account"),
)

# Comments on the reporting tables are shown to BI users (PostgreSQL `COMMENT ON`, applied by a
# migration); they say what a value means, in which unit, and which day.
_ORG = "The organization's id in the product."
_AD_ACCOUNT = "Meta ad account id, act_<digits>."
_CURRENCY = "ISO 4217 currency code of the ad account (the currency Meta bills in)."
_UPDATED = "When the pipeline last wrote this row (UTC)."

meta_spend_daily = sa.Table(
    "meta_spend_daily",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True, comment="Surrogate key; no meaning."),
    sa.Column("organization_id", sa.Text, nullable=False, comment=_ORG),
    sa.Column(
        "provider", sa.Text, nullable=False, comment="How the organization connected Meta: INSTAGRAM or FACEBOOK."
    ),
    sa.Column(
        "date", sa.Date, nullable=False, comment="The day, in the ad account's time zone (Meta's reporting day)."
    ),
    sa.Column(
        "level",
        sa.Text,
        nullable=False,
        comment="CAMPAIGN, ADSET or AD. Each level repeats the same spend: sum one level only, never several.",
    ),
    sa.Column("ad_account_id", sa.Text, nullable=False, comment=_AD_ACCOUNT),
    sa.Column("campaign_id", sa.Text, nullable=True, comment="Meta campaign id."),
    sa.Column("adset_id", sa.Text, nullable=True, comment="Meta ad set id; NULL on CAMPAIGN rows."),
    sa.Column("ad_id", sa.Text, nullable=True, comment="Meta ad id; NULL on CAMPAIGN and ADSET rows."),
    sa.Column("currency", sa.String(3), nullable=False, comment=_CURRENCY),
    sa.Column("spend", Money, nullable=False, comment="Amount spent that day, in currency, 2 decimals."),
    sa.Column("impressions", sa.BigInteger, nullable=True, comment="Times the ads were shown that day."),
    sa.Column("clicks", sa.BigInteger, nullable=True, comment="Clicks that day, as Meta counts them (all clicks)."),
    sa.Column("created_at", Timestamp, nullable=False, comment="When the row was first written (UTC)."),
    sa.Column("updated_at", Timestamp, nullable=False, comment=_UPDATED),
    sa.CheckConstraint(_in("provider", PROVIDERS), name="provider"),
    sa.CheckConstraint(_in("level", SPEND_LEVELS), name="level"),
    sa.Index("ix_meta_spend_daily_ad_account_id_date", "ad_account_id", "date"),
    comment="Meta ad spend per organization, day and campaign, ad set or ad (one row per level), from Meta's insights.",
)

# NULL ids count as equal: a campaign-level row (NULL adset_id and ad_id) written twice is one
# row. A unique index over COALESCE does that on SQLite and on every PostgreSQL version (NULLS
# NOT DISTINCT needs 15+); ids are never empty strings, the loader refuses them.
SPEND_KEY = (
    meta_spend_daily.c.organization_id,
    meta_spend_daily.c.date,
    meta_spend_daily.c.level,
    sa.func.coalesce(meta_spend_daily.c.campaign_id, sa.literal_column("''")),
    sa.func.coalesce(meta_spend_daily.c.adset_id, sa.literal_column("''")),
    sa.func.coalesce(meta_spend_daily.c.ad_id, sa.literal_column("''")),
)
sa.Index("uq_meta_spend_daily_key", *SPEND_KEY, unique=True)

lead = sa.Table(
    "lead",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("organization_id", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("campaign_id", sa.Text, nullable=True),
    sa.Column("adset_id", sa.Text, nullable=True),
    sa.Column("ad_id", sa.Text, nullable=True),
    sa.Index("ix_lead_organization_id_created_at", "organization_id", "created_at"),
)

sale = sa.Table(
    "sale",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("organization_id", sa.Text, nullable=False),
    sa.Column("lead_id", sa.Text, nullable=True),
    sa.Column("amount", Money, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("closed_at", Timestamp, nullable=True),
    sa.Index("ix_sale_organization_id_lead_id", "organization_id", "lead_id"),
)

# --- written by the assets -------------------------------------------------------------------

INSIGHT_LEVELS = ("ACCOUNT", "CAMPAIGN", "ADSET", "AD")
Ratio = Decimal_(18, 6)

meta_raw_insights = sa.Table(
    "meta_raw_insights",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("ad_account_id", sa.Text, nullable=False),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("row", Json, nullable=False),
    sa.Column("fetched_at", Timestamp, nullable=False),
    # The row's keys and numbers as parsed and validated at fetch time, so that the steps
    # downstream are set-based SQL instead of parsing JSON in Python again.
    sa.Column("campaign_id", sa.Text, nullable=True),
    sa.Column("adset_id", sa.Text, nullable=True),
    sa.Column("ad_id", sa.Text, nullable=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("spend", Money, nullable=False),
    sa.Column("impressions", sa.BigInteger, nullable=True),
    sa.Column("clicks", sa.BigInteger, nullable=True),
    sa.CheckConstraint(_in("level", INSIGHT_LEVELS), name="level"),
)

# One raw row per (organization, ad account, level, day, object): two writers that overlap
# cannot both insert (they also hold the organization's lock, see storage/locks.py).
RAW_KEY = (
    meta_raw_insights.c.organization_id,
    meta_raw_insights.c.ad_account_id,
    meta_raw_insights.c.level,
    meta_raw_insights.c.date,
    sa.func.coalesce(meta_raw_insights.c.campaign_id, sa.literal_column("''")),
    sa.func.coalesce(meta_raw_insights.c.adset_id, sa.literal_column("''")),
    sa.func.coalesce(meta_raw_insights.c.ad_id, sa.literal_column("''")),
)
sa.Index("uq_meta_raw_insights_key", *RAW_KEY, unique=True)

# Which ad account each campaign, ad set and ad belongs to, as seen in Meta's rows: how a
# lead finds its ad account's time zone without scanning the organization's history.
meta_object_account = sa.Table(
    "meta_object_account",
    metadata,
    sa.Column("organization_id", sa.Text, nullable=False),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("object_id", sa.Text, nullable=False),
    sa.Column("ad_account_id", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("organization_id", "level", "object_id", name="pk_meta_object_account"),
)

meta_ad_account = sa.Table(
    "meta_ad_account",
    metadata,
    sa.Column("ad_account_id", sa.Text, primary_key=True, comment=_AD_ACCOUNT),
    sa.Column("name", sa.Text, nullable=True, comment="The ad account's name in Meta."),
    sa.Column("currency", sa.String(3), nullable=False, comment=_CURRENCY),
    sa.Column(
        "timezone_name",
        sa.Text,
        nullable=False,
        comment="The ad account's time zone (IANA name): the days of its spend and of its leads are in it.",
    ),
    sa.Column(
        "timezone_offset_hours_utc",
        Decimal_(5, 2),
        nullable=True,
        comment="The time zone's offset from UTC in hours, as Meta last reported it.",
    ),
    sa.Column("updated_at", Timestamp, nullable=False, comment="When the pipeline last read it from Meta (UTC)."),
    comment="Meta ad accounts the pipeline has read: name, currency and time zone.",
)

meta_fetch_log = sa.Table(
    "meta_fetch_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("organization_id", sa.Text, nullable=False),
    sa.Column("ad_account_id", sa.Text, nullable=True),
    sa.Column("since", sa.Date, nullable=False),
    sa.Column("until", sa.Date, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("throttle_wait_seconds", sa.Float, nullable=False),
    sa.Column("fetched_at", Timestamp, nullable=False),
    # what was fetched (migration 0008): the daily insights, the breakdowns or the reach
    sa.Column("report", sa.Text, nullable=False, server_default="spend"),
    sa.CheckConstraint(_in("status", ("OK", "FAILED")), name="status"),
    sa.Index("ix_meta_fetch_log_run_id", "run_id"),
)


_GROUP_NAMES = {"campaign": "campaign", "adset": "ad set", "ad": "ad"}


def _roas_table(group: str) -> sa.Table:
    name = _GROUP_NAMES[group]
    return sa.Table(
        f"meta_roas_by_{group}",
        metadata,
        sa.Column("organization_id", sa.Text, primary_key=True, comment=_ORG),
        sa.Column(
            "date",
            sa.Date,
            primary_key=True,
            comment="The day, in the ad account's time zone: the day of the spend and of the leads' creation.",
        ),
        sa.Column(f"{group}_id", sa.Text, primary_key=True, comment=f"Meta {name} id."),
        sa.Column(
            "currency",
            sa.String(3),
            nullable=True,
            comment="ISO 4217 code of spend, revenue and avg_ticket: the spend's (else the ad account's).",
        ),
        sa.Column("leads_count", sa.Integer, nullable=False, comment=f"Leads created that day from this {name}."),
        sa.Column(
            "sales_count", sa.Integer, nullable=False, comment="Sales of those leads (counted on the lead's day)."
        ),
        sa.Column(
            "revenue",
            Money,
            nullable=True,
            comment="Sum of those sales' amounts, in currency; NULL when a sale is in another currency.",
        ),
        sa.Column("spend", Money, nullable=False, comment=f"Meta spend of this {name} that day, in currency."),
        sa.Column("avg_ticket", Money, nullable=True, comment="revenue / sales_count; NULL when sales_count is 0."),
        sa.Column(
            "conversion_rate", Ratio, nullable=True, comment="sales_count / leads_count; NULL when leads_count is 0."
        ),
        sa.Column(
            "roas",
            Ratio,
            nullable=True,
            comment="revenue / spend for this day alone; NULL when spend or revenue is 0. Over a range, "
            "sum revenue and spend first, then divide.",
        ),
        sa.Column(
            "revenue_currency_mismatch",
            sa.Boolean,
            nullable=False,
            comment="True when a sale is in another currency than the spend: revenue, avg_ticket and roas are NULL.",
        ),
        sa.Column("updated_at", Timestamp, nullable=False, comment=_UPDATED),
        # Added by migration 0006: Meta's own view of the same day and group, and the organization's
        # reporting currency (see docs/roas.md, "Two views of ROAS").
        sa.Column(
            "meta_purchases",
            sa.BigInteger,
            nullable=True,
            comment=f"Purchases Meta attributes to this {name} that day (omni_purchase, under the ad account's "
            "attribution setting, by the day of the ad's delivery); NULL when Meta reported none.",
        ),
        sa.Column(
            "meta_purchase_value",
            Money,
            nullable=True,
            comment="The value of those purchases as Meta reports it, in currency; NULL when Meta reported none.",
        ),
        sa.Column(
            "meta_roas",
            Ratio,
            nullable=True,
            comment="meta_purchase_value / spend for this day alone; NULL when either is 0 or missing.",
        ),
        sa.Column(
            "reporting_currency",
            sa.String(3),
            nullable=True,
            comment="The organization's reporting currency (ISO 4217) of spend_reporting and revenue_reporting.",
        ),
        sa.Column(
            "spend_reporting",
            Money,
            nullable=True,
            comment="spend converted to reporting_currency at the ECB reference rate of the day "
            "(the previous business day's on weekends and holidays), rounded half up to the reporting "
            "currency's minor units (whole yen for JPY); NULL when fx_rates_daily had no rate it needs.",
        ),
        sa.Column(
            "revenue_reporting",
            Money,
            nullable=True,
            comment="The sales' revenue converted to reporting_currency at the day's ECB rate, each sale "
            "currency converted and rounded before summing: set even when sales are in several currencies; "
            "NULL when fx_rates_daily had no rate it needs.",
        ),
        sa.Column(
            "roas_reporting",
            Ratio,
            nullable=True,
            comment="revenue_reporting / spend_reporting for this day alone; NULL when either is 0 or NULL.",
        ),
        sa.PrimaryKeyConstraint("organization_id", "date", f"{group}_id", name=f"pk_meta_roas_by_{group}"),
        comment=f"Leads, sales, revenue, spend and ROAS per organization, day and {name}.",
    )


ROAS_GROUPS = ("campaign", "adset", "ad")
meta_roas_by_campaign = _roas_table("campaign")
meta_roas_by_adset = _roas_table("adset")
meta_roas_by_ad = _roas_table("ad")
ROAS_TABLES = {"campaign": meta_roas_by_campaign, "adset": meta_roas_by_adset, "ad": meta_roas_by_ad}

# --- Meta's conversions, exchange rates, reporting currency (migration 0006) -----------------

CONVERSION_LEVELS = ("CAMPAIGN", "ADSET", "AD")

meta_conversions_daily = sa.Table(
    "meta_conversions_daily",
    metadata,
    sa.Column("organization_id", sa.Text, nullable=False, comment=_ORG),
    sa.Column("date", sa.Date, nullable=False, comment="The day of the ads' delivery, in the ad account's time zone."),
    sa.Column(
        "level",
        sa.Text,
        nullable=False,
        comment="CAMPAIGN, ADSET or AD. Each level repeats the same conversions: sum one level only.",
    ),
    sa.Column("ad_account_id", sa.Text, nullable=False, comment=_AD_ACCOUNT),
    sa.Column("campaign_id", sa.Text, nullable=True, comment="Meta campaign id."),
    sa.Column("adset_id", sa.Text, nullable=True, comment="Meta ad set id; NULL on CAMPAIGN rows."),
    sa.Column("ad_id", sa.Text, nullable=True, comment="Meta ad id; NULL on CAMPAIGN and ADSET rows."),
    sa.Column(
        "action_type",
        sa.Text,
        nullable=False,
        comment="Meta's action type, e.g. omni_purchase, purchase, lead. The same event appears under several "
        "types (purchase, offsite_conversion.fb_pixel_purchase, omni_purchase): pick one, never sum them.",
    ),
    sa.Column(
        "attribution_window",
        sa.Text,
        nullable=False,
        comment="default: under the ad account's own attribution setting, as Ads Manager shows it; "
        "else one of Meta's windows (7d_click, 1d_view, ...) asked for in META_ATTRIBUTION_WINDOWS.",
    ),
    sa.Column("currency", sa.String(3), nullable=False, comment=_CURRENCY),
    sa.Column("count", sa.BigInteger, nullable=True, comment="Actions Meta counted (`actions`); NULL if not sent."),
    sa.Column(
        "value",
        Money,
        nullable=True,
        comment="Their value in currency (`action_values`); NULL when Meta sent no value for the type.",
    ),
    sa.Column("updated_at", Timestamp, nullable=False, comment=_UPDATED),
    sa.CheckConstraint(_in("level", CONVERSION_LEVELS), name="level"),
    sa.Index("ix_meta_conversions_daily_ad_account_id_date", "ad_account_id", "date"),
    comment="Conversions as Meta reports them (actions and action_values), per organization, day, level, "
    "object, action type and attribution window, in the ad account's currency.",
)
CONVERSIONS_KEY = (
    meta_conversions_daily.c.organization_id,
    meta_conversions_daily.c.date,
    meta_conversions_daily.c.level,
    sa.func.coalesce(meta_conversions_daily.c.campaign_id, sa.literal_column("''")),
    sa.func.coalesce(meta_conversions_daily.c.adset_id, sa.literal_column("''")),
    sa.func.coalesce(meta_conversions_daily.c.ad_id, sa.literal_column("''")),
    meta_conversions_daily.c.action_type,
    meta_conversions_daily.c.attribution_window,
)
sa.Index("uq_meta_conversions_daily_key", *CONVERSIONS_KEY, unique=True)

FxRate = Decimal_(18, 6)

fx_rates_daily = sa.Table(
    "fx_rates_daily",
    metadata,
    sa.Column("date", sa.Date, primary_key=True, comment="The calendar day the rate applies to."),
    sa.Column("currency", sa.String(3), primary_key=True, comment="ISO 4217 code; EUR is 1."),
    sa.Column(
        "rate",
        FxRate,
        nullable=False,
        comment="Units of currency for one euro: the European Central Bank's reference rate.",
    ),
    sa.Column(
        "ecb_date",
        sa.Date,
        nullable=False,
        comment="The ECB publication day the rate is from: date itself, or the previous business day "
        "on weekends and TARGET holidays.",
    ),
    sa.Column("fetched_at", Timestamp, nullable=False, comment="When the pipeline read the rate (UTC)."),
    sa.PrimaryKeyConstraint("date", "currency", name="pk_fx_rates_daily"),
    comment="The ECB's daily euro reference rates, one row per calendar day and currency (weekends filled).",
)

DEFAULT_REPORTING_CURRENCY = "USD"

organization_setting = sa.Table(
    "organization_setting",
    metadata,
    sa.Column("organization_id", sa.Text, primary_key=True),
    sa.Column("reporting_currency", sa.String(3), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

# --- names and attributes of campaigns, ad sets and ads (Meta's object edges) ------------------


_OBJECT_LABEL = {"campaign": "campaign", "adset": "ad set", "ad": "ad"}


def _object_table(kind: str, *extra: sa.Column) -> sa.Table:
    label = _OBJECT_LABEL[kind]
    return sa.Table(
        f"meta_{kind}",
        metadata,
        sa.Column("organization_id", sa.Text, nullable=False, comment="The organization the ad account belongs to."),
        sa.Column("ad_account_id", sa.Text, nullable=False, comment=f"The ad account (act_<digits>) of the {label}."),
        sa.Column("id", sa.Text, nullable=False, comment=f"Meta's {label} id (digits)."),
        sa.Column("name", sa.Text, nullable=False, comment=f"The {label}'s name as Meta gave it when last fetched."),
        sa.Column(
            "status",
            sa.Text,
            nullable=False,
            comment="Status set by the advertiser: ACTIVE, PAUSED, ARCHIVED, DELETED.",
        ),
        sa.Column(
            "effective_status",
            sa.Text,
            nullable=False,
            comment="Status with its parents' applied (e.g. CAMPAIGN_PAUSED), as Ads Manager shows it.",
        ),
        *extra,
        sa.Column("created_time", Timestamp, nullable=True, comment=f"When the {label} was created (UTC)."),
        sa.Column("updated_time", Timestamp, nullable=True, comment=f"When Meta last changed the {label} (UTC)."),
        sa.Column(
            "last_seen_at",
            Timestamp,
            nullable=False,
            comment="When this pipeline last read the object from Meta (UTC).",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=f"pk_meta_{kind}"),
        sa.Index(f"ix_meta_{kind}_organization_id_ad_account_id", "organization_id", "ad_account_id"),
        comment=f"Meta's {label}s of every status (archived and deleted included): names and attributes, "
        "one row per organization and id, refreshed from Meta's object edges.",
    )


OBJECT_KINDS = ("campaign", "adset", "ad")
meta_campaign = _object_table(
    "campaign",
    sa.Column("objective", sa.Text, nullable=True, comment="The campaign's objective, e.g. OUTCOME_SALES."),
)
meta_adset = _object_table(
    "adset", sa.Column("campaign_id", sa.Text, nullable=False, comment="The campaign the ad set belongs to.")
)
meta_ad = _object_table(
    "ad",
    sa.Column("campaign_id", sa.Text, nullable=False, comment="The campaign the ad belongs to."),
    sa.Column("adset_id", sa.Text, nullable=False, comment="The ad set the ad belongs to."),
)
OBJECT_TABLES = {"campaign": meta_campaign, "adset": meta_adset, "ad": meta_ad}
# The ROAS tables with the names and attributes of their objects (migration 0005): ROAS by campaign
# with names in one query. Views, not tables: they follow renames without a rewrite.
NAMED_ROAS_VIEWS = {group: f"meta_roas_by_{group}_named" for group in ROAS_GROUPS}

NAMED_VIEW_COLUMN_COMMENTS = {
    **{
        f"{kind}_{what}": text.format(label=_OBJECT_LABEL[kind])
        for kind in OBJECT_KINDS
        for what, text in (
            ("name", "The {label}'s name (NULL until its names are fetched)."),
            ("status", "The {label}'s status set by the advertiser."),
            ("effective_status", "The {label}'s effective status, as Ads Manager shows it."),
        )
    },
    "objective": "The campaign's objective, e.g. OUTCOME_SALES.",
    "campaign_id": "The campaign of the row's object.",
    "adset_id": "The ad set of the row's object.",
}


def named_view_comments(group: str, columns: list[str]) -> tuple[str, dict[str, str]]:
    """The COMMENTs of a `meta_roas_by_<group>_named` view and of each of its columns."""
    table = ROAS_TABLES[group]
    comment = f"{table.comment} With the names, statuses and objective of its objects (LEFT JOIN)."
    objects = OBJECT_TABLES[group]

    def text(column: str) -> str:
        for source in (table, objects):
            if column in source.c and source.c[column].comment:
                return str(source.c[column].comment)
        return NAMED_VIEW_COLUMN_COMMENTS.get(column, f"{column}, from the {group}'s row in meta_{group}.")

    return comment, {c: text(c) for c in columns}


# --- breakdowns and reach (migration 0008) ----------------------------------------------------

# Breakdown rows as Meta sent them, for every set, with the set's values in dimension_1..3 in the
# set's order (`meta.models.BREAKDOWN_SETS`): one raw table, so the merge into each set's table is
# one set-based statement, as for meta_spend_daily.
BREAKDOWN_DIMENSIONS = ("dimension_1", "dimension_2", "dimension_3")
BREAKDOWN_COLUMNS = {
    "age_gender": ("age", "gender"),
    "country": ("country",),
    "placement": ("publisher_platform", "platform_position", "device_platform"),
}
BREAKDOWN_TABLE_NAMES = {name: f"meta_spend_by_{name}" for name in BREAKDOWN_COLUMNS}

meta_raw_breakdowns = sa.Table(
    "meta_raw_breakdowns",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("ad_account_id", sa.Text, nullable=False),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("breakdown", sa.Text, nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("campaign_id", sa.Text, nullable=True),
    sa.Column("adset_id", sa.Text, nullable=True),
    sa.Column("ad_id", sa.Text, nullable=True),
    sa.Column("dimension_1", sa.Text, nullable=False),
    sa.Column("dimension_2", sa.Text, nullable=False),  # '' where the set has fewer values
    sa.Column("dimension_3", sa.Text, nullable=False),
    sa.Column("row", Json, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("spend", Money, nullable=False),
    sa.Column("impressions", sa.BigInteger, nullable=True),
    sa.Column("clicks", sa.BigInteger, nullable=True),
    sa.Column("fetched_at", Timestamp, nullable=False),
    sa.CheckConstraint(_in("level", SPEND_LEVELS), name="level"),
    sa.CheckConstraint(_in("breakdown", tuple(BREAKDOWN_COLUMNS)), name="breakdown"),
)
RAW_BREAKDOWN_KEY = (
    meta_raw_breakdowns.c.organization_id,
    meta_raw_breakdowns.c.ad_account_id,
    meta_raw_breakdowns.c.breakdown,
    meta_raw_breakdowns.c.level,
    meta_raw_breakdowns.c.date,
    sa.func.coalesce(meta_raw_breakdowns.c.campaign_id, sa.literal_column("''")),
    sa.func.coalesce(meta_raw_breakdowns.c.adset_id, sa.literal_column("''")),
    sa.func.coalesce(meta_raw_breakdowns.c.ad_id, sa.literal_column("''")),
    meta_raw_breakdowns.c.dimension_1,
    meta_raw_breakdowns.c.dimension_2,
    meta_raw_breakdowns.c.dimension_3,
)
sa.Index("uq_meta_raw_breakdowns_key", *RAW_BREAKDOWN_KEY, unique=True)

_BREAKDOWN_VALUE_COMMENTS = {
    "age": "Age bracket as Meta reports it: 18-24, 25-34, 35-44, 45-54, 55-64, 65+ or Unknown.",
    "gender": "Gender as Meta reports it: female, male or unknown.",
    "country": "Country (ISO 3166 alpha-2, e.g. US) as Meta reports it, or unknown.",
    "publisher_platform": "Where the ads ran: facebook, instagram, audience_network or messenger.",
    "platform_position": "The placement within the platform, e.g. feed, instagram_stories, instagram_reels.",
    "device_platform": "The device: mobile_app, mobile_web or desktop.",
}
_BREAKDOWN_LABELS = {"age_gender": "age and gender", "country": "country", "placement": "placement"}


def _breakdown_table(name: str) -> sa.Table:
    return sa.Table(
        BREAKDOWN_TABLE_NAMES[name],
        metadata,
        sa.Column("id", BigId, primary_key=True, autoincrement=True, comment="Surrogate key; no meaning."),
        sa.Column("organization_id", sa.Text, nullable=False, comment=_ORG),
        sa.Column(
            "provider", sa.Text, nullable=False, comment="How the organization connected Meta: INSTAGRAM or FACEBOOK."
        ),
        sa.Column(
            "date", sa.Date, nullable=False, comment="The day, in the ad account's time zone (Meta's reporting day)."
        ),
        sa.Column(
            "level",
            sa.Text,
            nullable=False,
            comment="CAMPAIGN, ADSET or AD (META_BREAKDOWN_LEVELS). Each level repeats the same spend: sum one "
            "level only.",
        ),
        sa.Column("ad_account_id", sa.Text, nullable=False, comment=_AD_ACCOUNT),
        sa.Column("campaign_id", sa.Text, nullable=True, comment="Meta campaign id."),
        sa.Column("adset_id", sa.Text, nullable=True, comment="Meta ad set id; NULL on CAMPAIGN rows."),
        sa.Column("ad_id", sa.Text, nullable=True, comment="Meta ad id; NULL on CAMPAIGN and ADSET rows."),
        *(
            sa.Column(column, sa.Text, nullable=False, comment=_BREAKDOWN_VALUE_COMMENTS[column])
            for column in BREAKDOWN_COLUMNS[name]
        ),
        sa.Column("currency", sa.String(3), nullable=False, comment=_CURRENCY),
        sa.Column(
            "spend",
            Money,
            nullable=False,
            comment=f"Amount spent that day on this {_BREAKDOWN_LABELS[name]}, in currency. The rows of an "
            "object's day add up to its meta_spend_daily row.",
        ),
        sa.Column("impressions", sa.BigInteger, nullable=True, comment="Times the ads were shown that day."),
        sa.Column("clicks", sa.BigInteger, nullable=True, comment="Clicks that day, as Meta counts them (all clicks)."),
        sa.Column("created_at", Timestamp, nullable=False, comment="When the row was first written (UTC)."),
        sa.Column("updated_at", Timestamp, nullable=False, comment=_UPDATED),
        sa.CheckConstraint(_in("provider", PROVIDERS), name="provider"),
        sa.CheckConstraint(_in("level", SPEND_LEVELS), name="level"),
        sa.Index(f"ix_{BREAKDOWN_TABLE_NAMES[name]}_ad_account_id_date", "ad_account_id", "date"),
        comment=f"Meta ad spend, impressions and clicks per organization, day, object and {_BREAKDOWN_LABELS[name]} "
        "(Meta's breakdowns). Rows with no spend and no impressions are left out, as Meta leaves them out.",
    )


BREAKDOWN_TABLES = {name: _breakdown_table(name) for name in BREAKDOWN_COLUMNS}


def breakdown_key(table: sa.Table, name: str) -> tuple[sa.ColumnElement[Any], ...]:
    """The unique key of a breakdown table: meta_spend_daily's, with the breakdown's values."""
    return (
        table.c.organization_id,
        table.c.date,
        table.c.level,
        sa.func.coalesce(table.c.campaign_id, sa.literal_column("''")),
        sa.func.coalesce(table.c.adset_id, sa.literal_column("''")),
        sa.func.coalesce(table.c.ad_id, sa.literal_column("''")),
        *(table.c[column] for column in BREAKDOWN_COLUMNS[name]),
    )


BREAKDOWN_KEYS = {name: breakdown_key(table, name) for name, table in BREAKDOWN_TABLES.items()}
for _name, _table in BREAKDOWN_TABLES.items():
    sa.Index(f"uq_{_table.name}_key", *BREAKDOWN_KEYS[_name], unique=True)

REACH_PERIODS = {"week": "week_start", "month": "month_start"}
REACH_TABLE_NAMES = {"week": "meta_reach_weekly", "month": "meta_reach_monthly"}
_NOT_SUMMED = (
    "Unique people, counted by Meta over the whole period for this object: never sum it across periods, "
    "objects or levels (people are counted once however many days or ads reached them)."
)

meta_raw_reach = sa.Table(
    "meta_raw_reach",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("ad_account_id", sa.Text, nullable=False),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("period", sa.Text, nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("campaign_id", sa.Text, nullable=True),
    sa.Column("adset_id", sa.Text, nullable=True),
    sa.Column("ad_id", sa.Text, nullable=True),
    sa.Column("row", Json, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("reach", sa.BigInteger, nullable=False),
    sa.Column("frequency", Ratio, nullable=False),
    sa.Column("impressions", sa.BigInteger, nullable=False),
    sa.Column("spend", Money, nullable=False),
    sa.Column("fetched_at", Timestamp, nullable=False),
    sa.CheckConstraint(_in("level", INSIGHT_LEVELS), name="level"),
    sa.CheckConstraint(_in("period", tuple(REACH_PERIODS)), name="period"),
)
RAW_REACH_KEY = (
    meta_raw_reach.c.organization_id,
    meta_raw_reach.c.ad_account_id,
    meta_raw_reach.c.period,
    meta_raw_reach.c.level,
    meta_raw_reach.c.period_start,
    sa.func.coalesce(meta_raw_reach.c.campaign_id, sa.literal_column("''")),
    sa.func.coalesce(meta_raw_reach.c.adset_id, sa.literal_column("''")),
    sa.func.coalesce(meta_raw_reach.c.ad_id, sa.literal_column("''")),
)
sa.Index("uq_meta_raw_reach_key", *RAW_REACH_KEY, unique=True)


def _reach_table(period: str) -> sa.Table:
    start = REACH_PERIODS[period]
    label = {"week": "week (Monday to Sunday)", "month": "calendar month"}[period]
    return sa.Table(
        REACH_TABLE_NAMES[period],
        metadata,
        sa.Column("organization_id", sa.Text, nullable=False, comment=_ORG),
        sa.Column("ad_account_id", sa.Text, nullable=False, comment=_AD_ACCOUNT),
        sa.Column(
            "level",
            sa.Text,
            nullable=False,
            comment="ACCOUNT, CAMPAIGN, ADSET or AD (META_REACH_LEVELS): the object the reach is counted for.",
        ),
        sa.Column("campaign_id", sa.Text, nullable=True, comment="Meta campaign id; NULL on ACCOUNT rows."),
        sa.Column("adset_id", sa.Text, nullable=True, comment="Meta ad set id; NULL on ACCOUNT and CAMPAIGN rows."),
        sa.Column("ad_id", sa.Text, nullable=True, comment="Meta ad id; NULL except on AD rows."),
        sa.Column(
            start, sa.Date, nullable=False, comment=f"The first day of the {label}, in the ad account's time zone."
        ),
        sa.Column(
            "period_end",
            sa.Date,
            nullable=False,
            comment=f"The last day of the {label} counted: its last day, or the last day loaded while the {period} "
            "is not over (the row is rewritten when its partition runs again).",
        ),
        sa.Column("currency", sa.String(3), nullable=False, comment=_CURRENCY),
        sa.Column("reach", sa.BigInteger, nullable=False, comment=_NOT_SUMMED),
        sa.Column(
            "frequency",
            Ratio,
            nullable=False,
            comment="Meta's average number of times each person reached saw the ads over the period "
            "(impressions / reach): never sum or average it across periods or objects; recompute it from "
            "impressions and reach of the same row.",
        ),
        sa.Column("impressions", sa.BigInteger, nullable=False, comment=f"Times the ads were shown over the {period}."),
        sa.Column("spend", Money, nullable=False, comment=f"Amount spent over the {period}, in currency."),
        sa.Column("updated_at", Timestamp, nullable=False, comment=_UPDATED),
        sa.CheckConstraint(_in("level", INSIGHT_LEVELS), name="level"),
        comment=f"Meta's unique reach and frequency per organization, ad account, object and {label}, as Meta "
        f"counts them over the whole {period}: never a sum of days or of children. Reach and frequency must "
        "not be summed across periods or objects.",
    )


REACH_TABLES = {period: _reach_table(period) for period in REACH_PERIODS}


def reach_key(table: sa.Table, period: str) -> tuple[sa.ColumnElement[Any], ...]:
    return (
        table.c.organization_id,
        table.c.ad_account_id,
        table.c.level,
        table.c[REACH_PERIODS[period]],
        sa.func.coalesce(table.c.campaign_id, sa.literal_column("''")),
        sa.func.coalesce(table.c.adset_id, sa.literal_column("''")),
        sa.func.coalesce(table.c.ad_id, sa.literal_column("''")),
    )


REACH_KEYS = {period: reach_key(table, period) for period, table in REACH_TABLES.items()}
for _period, _table in REACH_TABLES.items():
    sa.Index(f"uq_{_table.name}_key", *REACH_KEYS[_period], unique=True)

_WITH_NAMES = "With the names of its campaign, ad set and ad and the campaign's objective (LEFT JOIN)."
NAMED_BREAKDOWN_AND_REACH_VIEWS = {
    **{f"{table.name}_named": (table, _WITH_NAMES) for table in BREAKDOWN_TABLES.values()},
    **{f"{table.name}_named": (table, _WITH_NAMES) for table in REACH_TABLES.values()},
}
