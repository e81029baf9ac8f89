"""The BI query analysts run, on a warehouse of realistic size (PostgreSQL).

    .venv/bin/python bench/bi_query.py [--organizations 100] [--days 365] [--repeat 50]

Fills a fresh PostgreSQL warehouse (through the project's migrations) with `meta_spend_daily`
rows for `organizations` organizations over `days` days: 10 campaigns, 40 ad sets and 200 ads
each per day (250 rows a day: 100 x 365 gives 9.1M rows), and ROAS tables to match (one row per
object and day). Then times, `repeat` times, "ROAS by campaign for one organization over 90 days,
summed before dividing" (a simpler form of the BI query in docs/warehouse.md), for a different organization each time, and
prints the median and the 95th percentile, with the plan of one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
import uuid
from typing import Any

import psycopg
import sqlalchemy as sa

from metaspend_pipeline.storage import db

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

QUERY = """
SELECT campaign_id,
       SUM(leads_count) AS leads, SUM(sales_count) AS sales,
       SUM(revenue) AS revenue, SUM(spend) AS spend,
       CASE WHEN SUM(revenue) > 0 AND SUM(spend) > 0 THEN ROUND(SUM(revenue) / SUM(spend), 6) END AS roas
FROM meta_roas_by_campaign
WHERE organization_id = %(org)s AND date BETWEEN %(since)s AND %(until)s
GROUP BY campaign_id
ORDER BY spend DESC
"""

FILL = """
INSERT INTO meta_spend_daily (organization_id, provider, date, level, ad_account_id, campaign_id, adset_id, ad_id,
                              currency, spend, impressions, clicks, created_at, updated_at)
SELECT 'org-' || o, 'FACEBOOK', DATE '2025-01-01' + d, lvl.level, 'act_' || (1000 + o),
       'c' || o || '-' || (a / 20),
       CASE WHEN lvl.level <> 'CAMPAIGN' THEN 's' || o || '-' || (a / 5) END,
       CASE WHEN lvl.level = 'AD' THEN 'a' || o || '-' || a END,
       'USD', ((o * 7 + d * 13 + a * 17) %% 10000) / 100.0, 100, 3, now(), now()
FROM generate_series(0, %(orgs)s - 1) AS o,
     generate_series(0, %(days)s - 1) AS d,
     (VALUES ('CAMPAIGN', 20), ('ADSET', 5), ('AD', 1)) AS lvl(level, step),
     generate_series(0, 199) AS a
WHERE a %% lvl.step = 0
"""

FILL_ROAS = """
INSERT INTO meta_roas_by_{group} (organization_id, date, {group}_id, currency, leads_count, sales_count, revenue,
                                  spend, avg_ticket, conversion_rate, roas, revenue_currency_mismatch, updated_at)
SELECT organization_id, date, {group}_id, currency, 3, 1, spend * 2, spend, spend * 2, 0.333333,
       CASE WHEN spend > 0 THEN 2 END, false, now()
FROM meta_spend_daily WHERE level = '{level}'
"""


def run(organizations: int = 100, days: int = 365, repeat: int = 50) -> dict[str, Any]:
    name = f"metaspend_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        db.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            conn.execute(FILL, {"orgs": organizations, "days": days})
            for group, level in (("campaign", "CAMPAIGN"), ("adset", "ADSET"), ("ad", "AD")):
                conn.execute(FILL_ROAS.format(group=group, level=level))
            conn.execute("VACUUM ANALYZE")
            fill_seconds = time.perf_counter() - started
            rows = conn.execute("SELECT count(*) FROM meta_spend_daily").fetchone()[0]
            roas_rows = conn.execute("SELECT count(*) FROM meta_roas_by_campaign").fetchone()[0]
            first = dt.date(2025, 1, 1)
            until = first + dt.timedelta(days=days - 1)
            since = max(first, until - dt.timedelta(days=89))
            timings = []
            for i in range(repeat):
                params = {"org": f"org-{i % organizations}", "since": since, "until": until}
                t0 = time.perf_counter()
                result = conn.execute(QUERY, params).fetchall()
                timings.append(time.perf_counter() - t0)
                assert result, "the query found no campaign"
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    "EXPLAIN (ANALYZE, BUFFERS) " + QUERY, {"org": "org-0", "since": since, "until": until}
                )
            )
    finally:
        db.engine_for(url).dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    timings.sort()
    out = {
        "spend_rows": rows,
        "roas_campaign_rows": roas_rows,
        "fill_seconds": round(fill_seconds, 1),
        "median_ms": round(statistics.median(timings) * 1000, 2),
        "p95_ms": round(timings[int(0.95 * (len(timings) - 1))] * 1000, 2),
        "plan": plan,
    }
    print(
        f"{rows:,} spend rows, {roas_rows:,} campaign ROAS rows (filled in {out['fill_seconds']} s): "
        f"median {out['median_ms']} ms, p95 {out['p95_ms']} ms"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--organizations", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print(run(args.organizations, args.days, args.repeat)["plan"])


if __name__ == "__main__":
    main()
