"""The write path of one merge scope, side by side with pandas and a bare COPY.

    .venv/bin/python bench/write_path.py [--sizes 10000,100000,1000000] [--repeat 3] [--backends postgres,sqlite]

One merge scope is one organization's ad account over a range of days, as an ad-level backfill
writes it. For each size and backend, in one run, several repetitions of:

- project: this project's path, from parsed rows to `meta_spend_daily`: `replace_raw_insights`
  (COPY on PostgreSQL, executemany on SQLite, into the raw table with its unique key), then
  `refresh_spend` (set-based INSERT ... ON CONFLICT from the raw rows, and the anti-join delete);
- pandas: `DataFrame.to_sql(method="multi")` into a staging table, then one INSERT ... ON
  CONFLICT from it into `meta_spend_daily` (what a pandas pipeline would write);
- copy: a bare COPY (PostgreSQL) / executemany (SQLite) into a staging table, then the same
  INSERT ... ON CONFLICT.

Every repetition starts from an empty, freshly created warehouse (the first backfill, when the
tables have no statistics, is the case that bites) and is timed from the first row to the
commit. Reported: median seconds, rows per second, and the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from metaspend_pipeline.meta.models import InsightRow
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage import spend as spend_store
from metaspend_pipeline.storage.bulk import load_rows

ADMIN_URL = os.environ.get("METASPEND_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FIRST_DAY = dt.date(2026, 1, 1)
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
ADS_PER_DAY = 1000


Row = InsightRow  # a parsed row, as the client hands it to the raw store


def rows(n: int) -> Iterator[Row]:
    """n ad-level rows of one ad account: 1,000 ads a day over as many days as it takes."""
    for i in range(n):
        ad = i % ADS_PER_DAY
        spend = f"{(i * 7919) % 100000 // 100}.{(i * 7919) % 100:02d}"
        yield Row(
            ad_account_id="act_1",
            level="ad",
            date=FIRST_DAY + dt.timedelta(days=i // ADS_PER_DAY),
            campaign_id=str(120000 + ad // 50),
            adset_id=str(230000 + ad // 10),
            ad_id=str(340000 + ad),
            currency="USD",
            spend=Decimal(spend),
            impressions=100 + ad,
            clicks=ad % 17,
            raw={
                "date_start": "x",
                "campaign_id": str(120000 + ad // 50),
                "adset_id": str(230000 + ad // 10),
                "ad_id": str(340000 + ad),
                "spend": spend,
                "impressions": str(100 + ad),
                "clicks": str(ad % 17),
                "account_currency": "USD",
                "account_id": "1",
            },
        )


def last_day(n: int) -> dt.date:
    return FIRST_DAY + dt.timedelta(days=(n - 1) // ADS_PER_DAY)


# --- warehouses ------------------------------------------------------------------------------------


class Warehouse:
    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.url = ""
        self._name = ""

    def __enter__(self) -> sa.Engine:
        if self.backend == "postgres":
            self._name = f"metaspend_bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self._name}"')
            self.url = sa.make_url(ADMIN_URL).set(database=self._name).render_as_string(hide_password=False)
        else:
            self.url = f"sqlite:///{self.workdir / f'{uuid.uuid4().hex[:10]}.db'}"
        db.upgrade(self.url)
        return db.engine_for(self.url)

    def __exit__(self, *exc: object) -> None:
        db.engine_for(self.url).dispose()
        if self.backend == "postgres":
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')


# --- the three paths -------------------------------------------------------------------------------

SPEND_COLUMNS = (
    "organization_id",
    "provider",
    "date",
    "level",
    "ad_account_id",
    "campaign_id",
    "adset_id",
    "ad_id",
    "currency",
    "spend",
    "impressions",
    "clicks",
)


def project(engine: sa.Engine, n: int) -> None:
    with engine.begin() as conn:
        raw_store.replace_raw_insights(
            conn,
            organization_id="org-1",
            provider="FACEBOOK",
            ad_account_id="act_1",
            level="AD",
            since=FIRST_DAY,
            until=last_day(n),
            rows=rows(n),
            fetched_at=NOW,
        )
    with engine.begin() as conn:
        spend_store.refresh_spend(conn, "org-1", ["act_1"], FIRST_DAY, last_day(n), NOW)


def _staging(conn: sa.Connection, money_as_text: bool = False) -> sa.Table:
    types = {**_staging_types(), **({"spend": sa.Text} if money_as_text else {})}
    table = sa.Table(
        "bench_staging",
        sa.MetaData(),
        *[sa.Column(c, db_type) for c, db_type in types.items()],
        prefixes=["TEMPORARY"],
    )
    table.create(conn)
    return table


def _staging_types() -> dict[str, Any]:
    from metaspend_pipeline.storage.schema import Money

    return {
        "organization_id": sa.Text,
        "provider": sa.Text,
        "date": sa.Date,
        "level": sa.Text,
        "ad_account_id": sa.Text,
        "campaign_id": sa.Text,
        "adset_id": sa.Text,
        "ad_id": sa.Text,
        "currency": sa.Text,
        "spend": Money,
        "impressions": sa.BigInteger,
        "clicks": sa.BigInteger,
    }


def _spend_tuples(n: int) -> Iterator[tuple[Any, ...]]:
    for r in rows(n):
        yield (
            "org-1",
            "FACEBOOK",
            r.date,
            "AD",
            "act_1",
            r.campaign_id,
            r.adset_id,
            r.ad_id,
            r.currency,
            r.spend,
            r.impressions,
            r.clicks,
        )


def _merge_from_staging(conn: sa.Connection) -> None:
    columns = ", ".join(SPEND_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in ("provider", "ad_account_id", "currency", "spend"))
    conn.exec_driver_sql(
        f"INSERT INTO meta_spend_daily ({columns}, created_at, updated_at) "
        f"SELECT {columns.replace('spend', 'CAST(spend AS NUMERIC(18, 2))')}, '{NOW.isoformat()}', "
        f"'{NOW.isoformat()}' FROM bench_staging WHERE true "
        "ON CONFLICT (organization_id, date, level, coalesce(campaign_id, ''), coalesce(adset_id, ''), "
        f"coalesce(ad_id, '')) DO UPDATE SET {updates}"
    )


def pandas_path(engine: sa.Engine, n: int) -> None:
    import pandas as pd

    with engine.begin() as conn:
        _staging(conn, money_as_text=True)
        frame = pd.DataFrame.from_records(
            ((*t[:9], str(t[9]), t[10], t[11]) for t in _spend_tuples(n)), columns=list(SPEND_COLUMNS)
        )
        frame.to_sql("bench_staging", conn, if_exists="append", index=False, method="multi", chunksize=1000)
        _merge_from_staging(conn)


def copy_path(engine: sa.Engine, n: int) -> None:
    with engine.begin() as conn:
        staging = _staging(conn)
        load_rows(conn, staging, SPEND_COLUMNS, _spend_tuples(n))
        _merge_from_staging(conn)


PATHS: dict[str, Callable[[sa.Engine, int], None]] = {"project": project, "pandas": pandas_path, "copy": copy_path}


def measure(backend: str, path: str, n: int, workdir: Path) -> float:
    with Warehouse(backend, workdir) as engine:
        started = time.perf_counter()
        PATHS[path](engine, n)
        elapsed = time.perf_counter() - started
        with engine.connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM meta_spend_daily")).scalar_one()
        assert count == n, f"{path} on {backend} wrote {count} rows, expected {n}"
    return elapsed


def run(
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000),
    repeat: int = 3,
    backends: tuple[str, ...] = ("postgres", "sqlite"),
    paths: tuple[str, ...] = ("project", "pandas", "copy"),
    pandas_max: int = 100_000,
    repeat_above_100k: int = 1,
) -> list[dict[str, Any]]:
    """Median seconds and rows/s per (backend, size, path); pandas above `pandas_max` is skipped (too slow)."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            for n in sizes:
                times: dict[str, list[float]] = {p: [] for p in paths if p != "pandas" or n <= pandas_max}
                for _ in range(repeat if n <= 100_000 else repeat_above_100k):
                    for path in times:  # interleaved: the machine's noise hits every path alike
                        times[path].append(measure(backend, path, n, Path(tmp)))
                for path, samples in times.items():
                    median = statistics.median(samples)
                    results.append(
                        {"backend": backend, "rows": n, "path": path, "seconds": median, "rows_per_s": n / median}
                    )
                    print(f"{backend:8} {n:>9,} {path:8} {median:8.2f} s {n / median:>10,.0f} rows/s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--pandas-max", type=int, default=100_000)
    args = parser.parse_args()
    run(
        tuple(int(s) for s in args.sizes.split(",")),
        args.repeat,
        tuple(args.backends.split(",")),
        pandas_max=args.pandas_max,
    )


if __name__ == "__main__":
    main()
