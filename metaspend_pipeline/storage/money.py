"""Sums of money in SQL, exact on both databases.

PostgreSQL sums NUMERIC exactly. SQLite keeps money as doubles (see `schema.Decimal_`), whose
plain SUM drifts; there every value is turned back into whole minor units first (a double that
holds 14.35 times 100 rounds to exactly 1435) and integers are summed, which is exact.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from metaspend_pipeline.storage.db import is_postgres


def money_sum(conn: sa.Connection, column: Any, scale: int = 2) -> sa.ColumnElement[Any]:
    """SUM(column) in units of 10^-scale, exactly; read the result with `read_money_sum`."""
    factor = 10**scale
    if is_postgres(conn):
        return sa.func.sum(column) * factor
    return sa.func.sum(sa.cast(sa.func.round(column * factor), sa.BigInteger))


def read_money_sum(value: Any, scale: int = 2) -> Decimal:
    """The Decimal a `money_sum` stands for (0 for the sum of no rows)."""
    if value is None:
        return Decimal(0).scaleb(-scale)
    return (
        (Decimal(value) if not isinstance(value, float) else Decimal(round(value)))
        .scaleb(-scale)
        .quantize(Decimal(1).scaleb(-scale))
    )
