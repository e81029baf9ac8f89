"""The sandbox's European Central Bank: deterministic euro reference rates in the ECB's XML format.

Rates are published on TARGET business days only (no weekends, no 1 January, Good Friday, Easter
Monday, 1 May, 25 and 26 December), as at the ECB, for the last `HISTORY_YEARS` years up to
today. Each rate is a fixed base with a small wobble derived from (seed, currency, day), written
with the ECB's precision (4 decimals, 2 for currencies worth less than a cent of a euro per unit).
`truth` says what a correct `fx_rates_daily` holds, the previous business day's rate filled in.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import sys
from collections.abc import Iterator
from decimal import Decimal
from xml.sax.saxutils import quoteattr

HISTORY_YEARS = 3
FEEDS = ("eurofxref-hist.xml", "eurofxref-hist-90d.xml", "eurofxref-daily.xml")
# Units of currency for one euro, roughly as in 2025; the ECB's list of currencies (BGN left it
# when Bulgaria adopted the euro on 1 January 2026).
BASE_RATES: dict[str, Decimal] = {
    currency: Decimal(rate)
    for currency, rate in (
        ("USD", "1.0850"),
        ("JPY", "161.50"),
        ("CZK", "25.120"),
        ("DKK", "7.4590"),
        ("GBP", "0.8450"),
        ("HUF", "398.50"),
        ("PLN", "4.2800"),
        ("RON", "4.9750"),
        ("SEK", "11.250"),
        ("CHF", "0.9420"),
        ("ISK", "149.90"),
        ("NOK", "11.650"),
        ("TRY", "36.800"),
        ("AUD", "1.6650"),
        ("BRL", "6.0500"),
        ("CAD", "1.5150"),
        ("CNY", "7.8500"),
        ("HKD", "8.4500"),
        ("IDR", "17350.00"),
        ("ILS", "3.9800"),
        ("INR", "91.250"),
        ("KRW", "1520.00"),
        ("MXN", "21.300"),
        ("MYR", "4.7800"),
        ("NZD", "1.8350"),
        ("PHP", "62.150"),
        ("SGD", "1.4500"),
        ("THB", "36.900"),
        ("ZAR", "19.850"),
    )
}
_NAMESPACES = (
    'xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref"'
)


def easter_sunday(year: int) -> dt.date:
    """Gregorian Easter (the anonymous algorithm, as in Meeus)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    weekday = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * weekday) // 451
    month, day = divmod(h + weekday - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def target_holidays(year: int) -> frozenset[dt.date]:
    """The TARGET2 closing days: no reference rates are published on them."""
    easter = easter_sunday(year)
    return frozenset(
        {
            dt.date(year, 1, 1),
            easter - dt.timedelta(days=2),
            easter + dt.timedelta(days=1),
            dt.date(year, 5, 1),
            dt.date(year, 12, 25),
            dt.date(year, 12, 26),
        }
    )


def is_business_day(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in target_holidays(day.year)


class EcbRates:
    """The sandbox's reference rates, derived from `seed`; `today` bounds what is published."""

    def __init__(self, seed: int = 0, currencies: dict[str, Decimal] | None = None) -> None:
        self.seed = seed
        self.base_rates = dict(currencies or BASE_RATES)

    def _rate(self, currency: str, day: dt.date) -> Decimal:
        base = self.base_rates[currency]
        digest = hashlib.blake2b(f"{self.seed}:ecb:{currency}:{day}".encode(), digest_size=8).digest()
        wobble = Decimal(int.from_bytes(digest, "big") % 4001 - 2000) / Decimal(100_000)  # within +-2%
        return (base * (1 + wobble)).quantize(Decimal("0.01") if base >= 100 else Decimal("0.0001"))

    def first_day(self, today: dt.date) -> dt.date:
        return today.replace(year=today.year - HISTORY_YEARS, day=min(today.day, 28))

    def published(self, day: dt.date) -> dict[str, Decimal]:
        """The rates published on `day`: none on weekends and TARGET holidays."""
        if not is_business_day(day):
            return {}
        return {currency: self._rate(currency, day) for currency in sorted(self.base_rates)}

    def publication_days(self, since: dt.date, until: dt.date) -> Iterator[dt.date]:
        """Business days from `until` back to `since`, newest first (the feeds' order)."""
        day = until
        while day >= since:
            if is_business_day(day):
                yield day
            day -= dt.timedelta(days=1)

    def feed(self, name: str, today: dt.date) -> str:
        """One of the ECB's three XML files, as of `today`."""
        if name == "eurofxref-daily.xml":
            days = list(self.publication_days(today - dt.timedelta(days=10), today))[:1]
        elif name == "eurofxref-hist-90d.xml":
            days = list(self.publication_days(today - dt.timedelta(days=90), today))
        elif name == "eurofxref-hist.xml":
            days = list(self.publication_days(self.first_day(today), today))
        else:
            raise KeyError(name)
        return render((day, self.published(day)) for day in days)

    def filled(self, day: dt.date) -> tuple[dt.date, dict[str, Decimal]]:
        """The rates a correct `fx_rates_daily` holds for `day`: its own, or the previous business day's."""
        source = day
        while not is_business_day(source):
            source -= dt.timedelta(days=1)
        return source, self.published(source)

    def truth(self, since: dt.date, until: dt.date) -> list[dict[str, object]]:
        """Every row of `fx_rates_daily` over [since, until], EUR included (1), as dicts."""
        rows: list[dict[str, object]] = []
        day = since
        while day <= until:
            source, rates = self.filled(day)
            for currency, rate in sorted({**rates, "EUR": Decimal(1)}.items()):
                rows.append({"date": day, "currency": currency, "rate": rate, "ecb_date": source})
            day += dt.timedelta(days=1)
        return rows


def render(days: Iterator[tuple[dt.date, dict[str, Decimal]]]) -> str:
    """Rates per day in the ECB's `gesmes:Envelope` format, days in the order given."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<gesmes:Envelope {_NAMESPACES}>",
        "\t<gesmes:subject>Reference rates</gesmes:subject>",
        "\t<gesmes:Sender>",
        "\t\t<gesmes:name>European Central Bank</gesmes:name>",
        "\t</gesmes:Sender>",
        "\t<Cube>",
    ]
    for day, rates in days:
        lines.append(f"\t\t<Cube time={quoteattr(day.isoformat())}>")
        lines.extend(
            f"\t\t\t<Cube currency={quoteattr(currency)} rate={quoteattr(str(rate))}/>"
            for currency, rate in rates.items()
        )
        lines.append("\t\t</Cube>")
    lines += ["\t</Cube>", "</gesmes:Envelope>", ""]
    return "\n".join(lines)


BUNDLE_SINCE, BUNDLE_UNTIL = dt.date(2024, 1, 1), dt.date(2028, 12, 31)
BUNDLE_CURRENCIES = ("USD", "BRL", "INR", "JPY", "GBP", "CHF", "CAD", "AUD")  # the demo's and a few more


def write_bundle(path: str, seed: int = 0) -> None:
    """The package's bundled rates (`METASPEND_FX_RATES_URL=bundled`): the sandbox's (seed 0) of a few
    currencies from 2024 to 2028, gzipped with a fixed mtime so that the file is the same on every
    machine. Synthetic: for offline demos and tests, never for real reporting."""
    rates = EcbRates(seed, {c: BASE_RATES[c] for c in BUNDLE_CURRENCIES})
    days = rates.publication_days(BUNDLE_SINCE, BUNDLE_UNTIL)
    data = render((day, rates.published(day)) for day in days).encode()
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
        out.write(data)


if __name__ == "__main__":  # python -m metaspend_pipeline.sandbox.ecb metaspend_pipeline/data/eurofxref-sandbox.xml.gz
    write_bundle(sys.argv[1])
