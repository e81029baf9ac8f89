"""Currencies: how many decimals (minor units) each one has, in one table.

From ISO 4217. A currency missing from the table is taken to have 2 decimals, the most common
case; the table lists the exceptions, plus the common 2-decimal currencies for the reader.
"""

from __future__ import annotations

import re

CURRENCY_CODE = re.compile(r"[A-Z]{3}", re.ASCII)
EUR = "EUR"  # the ECB's rates are units of a currency per euro: EUR's is 1

MINOR_UNITS: dict[str, int] = {
    # no minor unit in use
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV"),
        0,
    ),
    **dict.fromkeys(("XAF", "XOF", "XPF"), 0),
    # thousandths
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    # four decimals (a unit of account)
    "CLF": 4,
    "UYW": 4,
    # common currencies with cents, listed for the reader (the default is 2 anyway)
    **dict.fromkeys(("USD", "EUR", "GBP", "BRL", "CAD", "AUD", "MXN", "INR", "CHF", "CNY"), 2),
}
DEFAULT_MINOR_UNITS = 2


def minor_units(currency: str) -> int:
    """Decimals of the currency's amounts: 0 for JPY, 2 for USD, 3 for BHD; 2 when unknown."""
    return MINOR_UNITS.get(currency, DEFAULT_MINOR_UNITS)


# The warehouse's money columns are NUMERIC(18, 2) (`storage.schema.Money`): amounts must stay
# below 10**16 and have no more than 2 decimals, or storing them would fail or round.
AMOUNT_INTEGER_DIGITS = 16
AMOUNT_SCALE = 2
