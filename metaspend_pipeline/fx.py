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

import contextlib
import contextvars
import datetime as dt
import email.utils
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any
from xml.parsers import expat

import requests
import urllib3
from requests.adapters import HTTPAdapter

from metaspend_pipeline.currency import EUR
from metaspend_pipeline.errors import InvalidInputError, MetaspendError
from metaspend_pipeline.redaction import register_url_secrets, shown_url
from metaspend_pipeline.settings import fx_timeout_seconds
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
RATE_INTEGER_DIGITS = 12
# The longest run of days without a publication: Good Friday to Easter Monday is 4, a long
# weekend around 25-26 December or 1 January up to 4; beyond a week the feed is stale.
MAX_FILL_DAYS = 7
# The ECB's three files: the latest day, the last 90 days, and everything since 1999.
DAILY_FEED, HIST_90D_FEED, HIST_FEED = "eurofxref-daily.xml", "eurofxref-hist-90d.xml", "eurofxref-hist.xml"
HIST_90D_COVERS_DAYS = 85  # a margin below the file's 90 calendar days
# The most read of a feed, packed or unpacked: the ECB's full history is about 7 MB unpacked; beyond
# this the read stops (a gzip "bomb" is never unpacked whole), so memory stays bounded.
MAX_FEED_BYTES = 16 * 1024 * 1024
# One HTTP read of the feed: connections, retries and their waits share METASPEND_FX_TIMEOUT_SECONDS.
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 30.0
FEED_RETRIES = 4  # after the first try, on a connection failure, 429 and 5xx
MAX_RETRY_AFTER_SECONDS = 30.0  # a server's Retry-After is waited at most this long
MAX_REDIRECTS = 5
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 64 * 1024
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRY_SECONDS = re.compile(r"[0-9]{1,9}", re.ASCII)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)
_RATE = re.compile(r"(?P<integer>[0-9]+)(?:\.[0-9]{1,6})?", re.ASCII)
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


class _Watchdog:
    """Shuts the feed's sockets down when the deadline passes: a server that trickles its headers or
    its body, each byte within the socket's timeout, cannot hold the fetch beyond the deadline."""

    def __init__(self, deadline: float) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    # the plain socket's shutdown, also under TLS: a read blocked in another thread ends at once
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_WATCHDOG: contextvars.ContextVar[_Watchdog | None] = contextvars.ContextVar("fx_feed_watchdog", default=None)


def _watch(sock: socket.socket | None) -> None:
    watchdog = _WATCHDOG.get()
    if watchdog is not None and sock is not None:
        watchdog.watch(sock)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self.sock)


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self.sock)


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _FeedAdapter(HTTPAdapter):
    """requests' adapter whose connections are under the fetch's watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def retry_wait(retry_after: str | None, attempt: int, now: dt.datetime | None = None) -> float:
    """Seconds to wait before retry `attempt` (0 for the first): the server's Retry-After (seconds
    or an HTTP date), at most MAX_RETRY_AFTER_SECONDS; without one 1, 2, 4, 8 s."""
    text = (retry_after or "").strip()
    if _RETRY_SECONDS.fullmatch(text):
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    if text:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
            return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
    return float(2**attempt)


def read_feed(url: str, timeout: float | None = None) -> bytes:
    """The feed's bytes from an http(s) URL or a file:// path, gzip undone, at most MAX_FEED_BYTES
    (read and unpacked in a stream that stops there). An http(s) read, retries and their waits
    included, ends within `timeout` seconds (METASPEND_FX_TIMEOUT_SECONDS, 120, by default).
    Errors name the feed as `shown_url` shows it: never its query string."""
    register_url_secrets(url)
    shown = shown_url(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
        try:
            with path.open("rb") as file:
                data = file.read(MAX_FEED_BYTES + 1)
        except OSError as exc:
            raise FxRatesError(f"cannot read the ECB rates file {shown}: {exc.strerror or exc}") from None
        _check_size(data, shown, "")
        content_encoding = ""
    else:
        budget = fx_timeout_seconds() if timeout is None else timeout
        data, content_encoding = _download(url, shown, budget)
    if content_encoding in ("gzip", "x-gzip"):
        data = _gunzip(data, shown)
    if data[:2] == GZIP_MAGIC:
        data = _gunzip(data, shown)
    return data


def _check_size(data: bytes, shown: str, unpacked: str) -> None:
    if len(data) > MAX_FEED_BYTES:
        raise FxRatesError(
            f"the ECB rates at {shown} are larger than {MAX_FEED_BYTES} bytes{unpacked}, the most read "
            "(the ECB's full history is about 7 MB); refused"
        )


def _gunzip(data: bytes, shown: str) -> bytes:
    """gzip undone in a stream that stops at MAX_FEED_BYTES: a small file that unpacks to gigabytes
    never does."""
    out = bytearray()
    rest = data
    while rest:
        unpacker = zlib.decompressobj(wbits=31)  # gzip's header and trailer
        try:
            out += unpacker.decompress(rest, MAX_FEED_BYTES + 1 - len(out))
        except zlib.error as exc:
            raise FxRatesError(f"the ECB rates at {shown} are not valid gzip ({exc})") from None
        _check_size(out, shown, " once unpacked")
        if not unpacker.eof:
            raise FxRatesError(f"the ECB rates at {shown} are a truncated gzip file (it ends before its last block)")
        rest = unpacker.unused_data
        if rest and rest[:2] != GZIP_MAGIC:
            raise FxRatesError(f"the ECB rates at {shown} have {len(rest)} bytes after their gzip data")
    return bytes(out)


class _Late(Exception):
    """The deadline passed."""


def _download(url: str, shown: str, budget: float) -> tuple[bytes, str]:
    """The body and its Content-Encoding, under one deadline for connections, retries, their waits
    and the reads: a watchdog shuts the socket at the deadline, whatever the server does."""
    deadline = time.monotonic() + budget
    watchdog = _Watchdog(deadline)
    reset = _WATCHDOG.set(watchdog)
    late = FxRatesError(
        f"reading the ECB rates at {shown} took longer than {budget:g} s (METASPEND_FX_TIMEOUT_SECONDS); gave up"
    )
    try:
        with requests.Session() as session:
            session.mount("http://", _FeedAdapter())
            session.mount("https://", _FeedAdapter())
            return _fetch(session, url, shown, deadline, watchdog)
    except _Late:
        raise late from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        if watchdog.fired:
            raise late from None
        raise FxRatesError(f"cannot read the ECB rates at {shown}: {type(exc).__name__}") from None
    finally:
        _WATCHDOG.reset(reset)
        watchdog.cancel()


def _fetch(session: requests.Session, url: str, shown: str, deadline: float, watchdog: _Watchdog) -> tuple[bytes, str]:
    attempt = redirects = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Late
        timeouts = (min(CONNECT_TIMEOUT_SECONDS, remaining), min(READ_TIMEOUT_SECONDS, remaining))
        try:
            response = session.get(
                url, stream=True, allow_redirects=False, timeout=timeouts, headers={"Accept-Encoding": "gzip"}
            )
        except requests.ConnectionError:
            if watchdog.fired or attempt >= FEED_RETRIES:
                raise
            _pause(retry_wait(None, attempt), deadline, shown, "could not connect")
            attempt += 1
            continue
        with response:
            status = response.status_code
            if status in _REDIRECTS and response.headers.get("Location"):
                target = urllib.parse.urljoin(url, response.headers["Location"])
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise FxRatesError(f"the ECB rates at {shown} redirect more than {MAX_REDIRECTS} times")
                if urllib.parse.urlsplit(target).scheme not in ("https", urllib.parse.urlsplit(url).scheme):
                    raise FxRatesError(f"the ECB rates at {shown} redirect to {shown_url(target)}, not https; refused")
                register_url_secrets(target)
                url = target
                continue
            if status in _RETRY_STATUSES and attempt < FEED_RETRIES:
                wait = retry_wait(response.headers.get("Retry-After"), attempt)
                _pause(wait, deadline, shown, f"answered HTTP {status}")
                attempt += 1
                continue
            if status != 200:
                raise FxRatesError(f"the ECB rates at {shown} answered HTTP {status}")
            return _body(response, shown, deadline, watchdog)


def _pause(wait: float, deadline: float, shown: str, what: str) -> None:
    if time.monotonic() + wait >= deadline:
        raise FxRatesError(
            f"the ECB rates at {shown} {what}, and waiting {wait:g} s to retry would pass the deadline "
            f"(METASPEND_FX_TIMEOUT_SECONDS); gave up"
        )
    time.sleep(wait)


def _body(response: requests.Response, shown: str, deadline: float, watchdog: _Watchdog) -> tuple[bytes, str]:
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise FxRatesError(f"the ECB rates at {shown} come with Content-Encoding {encoding!r}; only gzip is read")
    chunks: list[bytes] = []
    size = 0
    while chunk := response.raw.read(_CHUNK_BYTES, decode_content=False):
        size += len(chunk)
        if size > MAX_FEED_BYTES:
            raise FxRatesError(
                f"the ECB rates at {shown} are larger than {MAX_FEED_BYTES} bytes, the most read "
                "(the ECB's full history is about 7 MB); refused"
            )
        if time.monotonic() >= deadline:
            raise _Late
        chunks.append(chunk)
    if watchdog.fired:  # the socket was shut: what arrived is not the whole body
        raise _Late
    return b"".join(chunks), encoding


def _local(name: str) -> str:
    return name.rpartition(" ")[2]  # expat's "namespace local-name"


class _FeedParser:
    """The ECB's `gesmes:Envelope`, read by expat as it goes (no tree is built), checked value by value."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.out: dict[dt.date, dict[str, Decimal]] = {}
        self._depth = 0
        self._day: dt.date | None = None
        self._day_depth = 0
        self._currencies: dict[str, str] = {}  # one str object per code, however many days use it

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self._depth += 1
        if _local(name) != "Cube":
            return
        if "time" in attributes:
            self._start_day(attributes["time"])
        elif "currency" in attributes and self._day is not None and self._depth == self._day_depth + 1:
            self._add_rate(attributes["currency"], attributes.get("rate"))

    def end(self, name: str) -> None:
        if self._day is not None and self._depth == self._day_depth:
            self._day = None
        self._depth -= 1

    def _start_day(self, text: str) -> None:
        try:
            day = dt.date.fromisoformat(text) if _DAY.fullmatch(text) else None
        except ValueError:
            day = None
        if day is None:
            raise FxRatesError(f"the ECB rates at {self.source} have a day {text!r}, not a date as YYYY-MM-DD")
        if day in self.out:
            raise FxRatesError(f"the ECB rates at {self.source} list the day {day} twice")
        self.out[day] = {}
        self._day, self._day_depth = day, self._depth

    def _add_rate(self, code: str, text: str | None) -> None:
        day = self._day
        if not _CURRENCY.fullmatch(code):
            raise FxRatesError(
                f"the ECB rates at {self.source} list a currency {code!r} on {day}, not a code of three capital "
                "letters A-Z"
            )
        code = self._currencies.setdefault(code, code)
        rates = self.out[day]  # type: ignore[index]
        if code in rates:
            raise FxRatesError(f"the ECB rates at {self.source} give {code} on {day} twice")
        rates[code] = _rate(text, code, str(day), self.source)


def _rate(text: str | None, currency: str, day: str, source: str) -> Decimal:
    match = _RATE.fullmatch(text or "")
    if match is None or len(match.group("integer").lstrip("0")) > RATE_INTEGER_DIGITS or Decimal(text) <= 0:  # type: ignore[arg-type]
        raise FxRatesError(
            f"the ECB rates at {source} give {currency} on {day} the rate {text!r}, not a positive decimal in "
            f"plain digits (at most {RATE_INTEGER_DIGITS} before the point and {RATE_SCALE} after)"
        )
    return Decimal(text)  # type: ignore[arg-type]


def parse_feed(data: bytes, source: str) -> dict[dt.date, dict[str, Decimal]]:
    """{publication day: {currency: units per euro}} from the ECB's `gesmes:Envelope` XML, in any
    encoding expat reads. A DOCTYPE (and so any entity) is refused, and every value is checked:
    days as YYYY-MM-DD, each once; currencies of three ASCII capital letters; rates of plain ASCII
    digits that NUMERIC(18, 6) holds. Each error is an FxRatesError naming the feed, the day and
    the value."""
    reader = _FeedParser(source)
    parser = expat.ParserCreate(namespace_separator=" ")

    def refuse_doctype(name: str, *_: object) -> None:
        raise FxRatesError(f"the ECB rates at {source} declare a DOCTYPE {name!r}; DTDs and entities are refused")

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    try:
        for offset in range(0, len(data), _CHUNK_BYTES):
            parser.Parse(data[offset : offset + _CHUNK_BYTES], False)
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise FxRatesError(f"the ECB rates at {source} are not XML: {exc}") from None
    if not reader.out:
        raise FxRatesError(f"the ECB rates at {source} hold no day of rates (no <Cube time=...>)")
    return reader.out


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
