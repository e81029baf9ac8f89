"""The European Central Bank's euro reference rates: read, parsed into exact decimals, carried over
weekends and TARGET holidays, and used to convert amounts. No Dagster here.

- The ECB publishes one rate per currency per business day, as units of currency for one euro.
  A day without a publication (a weekend, 1 January, Good Friday, Easter Monday, 1 May, 25 and 26
  December) takes the previous publication's rate, at most `MAX_FILL_DAYS` days old, and says so
  in `ecb_date`. EUR is 1.
- An amount in A is converted to B as amount * rate[B] / rate[A] of that day, rounded half up to
  B's minor units (cents for most, whole yen for JPY), exactly (Decimal with enough precision; never
  float).
"""

from __future__ import annotations

import datetime as dt
import gzip
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from pathlib import Path
from xml.etree import ElementTree

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from metaspend_pipeline.currency import EUR
from metaspend_pipeline.errors import InvalidInputError, MetaspendError
from metaspend_pipeline.storage.accounts import validate_currency
from metaspend_pipeline.storage.fx import FxRate
from metaspend_pipeline.storage.schema import DEFAULT_REPORTING_CURRENCY

# The currencies the ECB publishes reference rates for (2026: BGN left when Bulgaria adopted the
# euro). A reporting currency must be one of them or EUR; `fx_rates_daily` checks the feed itself.
ECB_CURRENCIES = frozenset(
    [
        "USD",
        "JPY",
        "CZK",
        "DKK",
        "GBP",
        "HUF",
        "PLN",
        "RON",
        "SEK",
        "CHF",
        "ISK",
        "NOK",
        "TRY",
        "AUD",
        "BRL",
        "CAD",
        "CNY",
        "HKD",
        "IDR",
        "ILS",
        "INR",
        "KRW",
        "MXN",
        "MYR",
        "NZD",
        "PHP",
        "SGD",
        "THB",
        "ZAR",
    ]
)
CENT = Decimal("0.01")
RATE_SCALE = 6  # fx_rates_daily.rate is NUMERIC(18, 6)
MAX_RATE = Decimal(10) ** 12
# The longest run of days without a publication: Good Friday to Easter Monday is 4, a long
# weekend around 25-26 December or 1 January up to 4; beyond a week the feed is stale.
MAX_FILL_DAYS = 7
# The ECB's three files: the latest day, the last 90 days, and everything since 1999.
DAILY_FEED, HIST_90D_FEED, HIST_FEED = "eurofxref-daily.xml", "eurofxref-hist-90d.xml", "eurofxref-hist.xml"
HIST_90D_COVERS_DAYS = 85  # a margin below the file's 90 calendar days
MAX_FEED_BYTES = 64 * 1024 * 1024
HTTP_TIMEOUT_SECONDS = 60.0
CONVERSION_PRECISION = 60  # digits: amount (18) times rate (18) over a rate (18), exact to the cent


class FxRatesError(MetaspendError):
    """The rates cannot be read, or lack a currency or a day the pipeline needs."""


def validate_reporting_currency(value: str) -> str:
    """A currency the ECB publishes (or EUR), as an upper-case ISO code; the error names it."""
    code = validate_currency(value, "reporting currency")
    if code != EUR and code not in ECB_CURRENCIES:
        raise InvalidInputError(
            f"reporting currency {code} has no ECB reference rate, so nothing could be converted to it; "
            f"choose EUR or one of {', '.join(sorted(ECB_CURRENCIES))}"
        )
    return code


def default_reporting_currency(currencies: Iterable[str]) -> tuple[str, str]:
    """An organization's first reporting currency, and why: its ad accounts' currency when they all
    share one the ECB publishes (or EUR), so its ROAS needs no exchange rate; USD when they are mixed."""
    found = sorted({c.upper() for c in currencies})
    if len(found) == 1 and (found[0] == EUR or found[0] in ECB_CURRENCIES):
        return found[0], "the currency of its ad accounts"
    if len(found) == 1:
        return DEFAULT_REPORTING_CURRENCY, f"its ad accounts' {found[0]} has no ECB reference rate"
    if found:
        return DEFAULT_REPORTING_CURRENCY, f"its ad accounts are in {', '.join(found)}"
    return DEFAULT_REPORTING_CURRENCY, "the default"


def feed_url(url: str, since: dt.date, today: dt.date) -> str:
    """The ECB file that covers [since - MAX_FILL_DAYS, ...]: a URL ending in one of the ECB's
    file names is moved to the full history (beside it) when the range reaches further back than
    the 90-day file; any other URL is used as it is."""
    parts = urllib.parse.urlsplit(url)
    directory, _, name = parts.path.rpartition("/")
    if name not in (DAILY_FEED, HIST_90D_FEED):
        return url
    first = since - dt.timedelta(days=MAX_FILL_DAYS)
    if first >= today - dt.timedelta(days=HIST_90D_COVERS_DAYS):
        wanted = HIST_90D_FEED if name == DAILY_FEED and first < today - dt.timedelta(days=3) else name
    else:
        wanted = HIST_FEED
    return urllib.parse.urlunsplit(parts._replace(path=f"{directory}/{wanted}"))


def _session() -> requests.Session:
    """One session with one retry policy for the feed: connection errors, 429 and 5xx, backed off."""
    session = requests.Session()
    retry = Retry(total=4, backoff_factor=1.0, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET",))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


def read_feed(url: str, timeout: float = HTTP_TIMEOUT_SECONDS) -> bytes:
    """The feed's bytes from an http(s) URL or a file:// path (gzip is undone)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FxRatesError(f"cannot read the ECB rates file {path}: {exc.strerror or exc}") from None
    else:
        try:
            with _session() as session, session.get(url, timeout=timeout, stream=True) as response:
                if response.status_code != 200:
                    raise FxRatesError(f"the ECB rates at {url} answered HTTP {response.status_code}")
                data = response.raw.read(MAX_FEED_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise FxRatesError(f"cannot read the ECB rates at {url}: {type(exc).__name__}") from None
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) > MAX_FEED_BYTES:
        raise FxRatesError(f"the ECB rates at {url} are larger than {MAX_FEED_BYTES} bytes")
    return data


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _rate(text: str | None, currency: str, day: str, source: str) -> Decimal:
    try:
        rate = Decimal(text or "")
    except InvalidOperation:
        rate = Decimal("NaN")
    if not rate.is_finite() or rate <= 0 or rate >= MAX_RATE or rate.as_tuple().exponent < -RATE_SCALE:  # type: ignore[operator]
        raise FxRatesError(
            f"the ECB rates at {source} give {currency} on {day} the rate {text!r}, not a positive decimal"
        )
    return rate


def parse_feed(data: bytes, source: str) -> dict[dt.date, dict[str, Decimal]]:
    """{publication day: {currency: units per euro}} from the ECB's `gesmes:Envelope` XML."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:  # the ECB's files have neither: refuse entity tricks
        raise FxRatesError(f"the ECB rates at {source} declare a DOCTYPE or entities; refused")
    try:
        root = ElementTree.fromstring(data)  # noqa: S314 - no DOCTYPE (checked above), expat >= 2.4
    except ElementTree.ParseError as exc:
        raise FxRatesError(f"the ECB rates at {source} are not XML: {exc}") from None
    out: dict[dt.date, dict[str, Decimal]] = {}
    for cube in root.iter():
        if _local(cube.tag) != "Cube" or "time" not in cube.attrib:
            continue
        try:
            day = dt.date.fromisoformat(cube.attrib["time"])
        except ValueError:
            raise FxRatesError(f"the ECB rates at {source} have a day {cube.attrib['time']!r}") from None
        rates = out.setdefault(day, {})
        for child in cube:
            currency = (child.attrib.get("currency") or "").strip().upper()
            if _local(child.tag) == "Cube" and currency:
                rates[currency] = _rate(child.attrib.get("rate"), currency, str(day), source)
    if not out:
        raise FxRatesError(f"the ECB rates at {source} hold no day of rates (no <Cube time=...>)")
    return out


def fill_days(publications: Mapping[dt.date, Mapping[str, Decimal]], since: dt.date, until: dt.date) -> list[FxRate]:
    """One rate per (day, currency) over [since, until]: the day's own publication, else the latest
    one before it no more than MAX_FILL_DAYS days old. EUR is 1 (dated like the publication used)."""
    published = sorted(publications)
    latest: dict[str, tuple[dt.date, Decimal]] = {}
    last_day: dt.date | None = None
    rows: list[FxRate] = []
    i = 0
    day = since
    while day <= until:
        while i < len(published) and published[i] <= day:
            last_day = published[i]
            for currency, rate in publications[last_day].items():
                latest[currency] = (last_day, rate)
            i += 1
        fresh = {c: v for c, v in latest.items() if (day - v[0]).days <= MAX_FILL_DAYS and c != EUR}
        if fresh:
            assert last_day is not None
            rows.append(FxRate(day, EUR, Decimal(1), last_day))
            rows.extend(FxRate(day, c, rate, source) for c, (source, rate) in sorted(fresh.items()))
        day += dt.timedelta(days=1)
    return rows


def unpublished(
    publications: Mapping[dt.date, Mapping[str, Decimal]], needed: Mapping[str, Sequence[str]]
) -> dict[str, Sequence[str]]:
    """{currency: who needs it} for the needed currencies the ECB does not publish at all."""
    known = {c for rates in publications.values() for c in rates} | {EUR}
    return {c: needed[c] for c in sorted(needed) if c not in known}


def describe_unpublished(missing: Mapping[str, Sequence[str]]) -> str:
    """'ARS, needed by organization pampa (sales); ...': what an unpublished currency blocks."""
    return "; ".join(f"{c}, needed by {', '.join(who)}" for c, who in missing.items())


def check_needed(
    rows: Iterable[FxRate],
    publications: Mapping[dt.date, Mapping[str, Decimal]],
    needed: Mapping[str, Sequence[str]],
    since: dt.date,
    until: dt.date,
    source: str,
) -> None:
    """Fail, naming the currency and who needs it, when a currency the ECB publishes lacks a day's
    rate (a feed that stops too early, or starts too late): every organization would lack it.

    A currency the ECB does not publish at all (`unpublished`) is not this source's fault: the
    asset writes the other rates and the organizations that need it fail alone, in ROAS."""
    have: dict[str, set[dt.date]] = {}
    for r in rows:
        have.setdefault(r.currency, set()).add(r.date)
    total = (until - since).days + 1
    for currency in sorted(set(needed) - set(unpublished(publications, needed))):
        missing = [since + dt.timedelta(days=n) for n in range(total)]
        missing = [d for d in missing if d not in have.get(currency, set())]
        if missing:
            first = min(publications)
            hint = f"; the feed starts on {first}" if missing[0] < first else ""
            raise FxRatesError(
                f"the ECB rates at {source} have no rate of {currency} for {missing[0]} nor the "
                f"{MAX_FILL_DAYS} days before ({len(missing)} day(s) of {since}..{until} lack one){hint}; "
                f"{currency} is needed by {', '.join(needed[currency])}"
            )


def convert(amount: Decimal, source_rate: Decimal, target_rate: Decimal, quantum: Decimal = CENT) -> Decimal:
    """amount * target_rate / source_rate, rounded half up to `quantum` (the target currency's minor
    unit: 1 for JPY, 0.01 for USD), exactly."""
    with localcontext() as ctx:
        ctx.prec = CONVERSION_PRECISION
        return (amount * target_rate / source_rate).quantize(quantum, ROUND_HALF_UP)
