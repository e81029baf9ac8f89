"""`meta_conversions_daily`: Meta's `actions` and `action_values`, rebuilt from the raw rows in SQL.

The raw rows keep the lists as Meta sent them, validated at fetch time (`meta.parsing.parse_conversions`:
counts whole numbers, values amounts of the account's currency). A scope (an organization's ad
accounts over a range of days) is replaced in the spend merge's transaction with two statements:
a DELETE of the scope's rows (a range of the (ad account, date) index), then one INSERT ... SELECT
that unnests each raw row's lists in the database (`jsonb_array_elements` / `jsonb_each_text` on
PostgreSQL, `json_each` on SQLite): no row crosses to Python, and the cost is linear in the rows.

Per raw row, an action type's `value` key becomes window `default` (the ad account's own
attribution setting) and each of Meta's window keys its own window; the count is the `actions`
entry's and the value the `action_values` entry's, NULL where Meta sent only the other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa

from metaspend_pipeline.storage.db import is_postgres
from metaspend_pipeline.storage.locks import lock_organization
from metaspend_pipeline.storage.schema import meta_conversions_daily

DEFAULT_WINDOW = "default"
_COLUMNS = """organization_id, date, level, ad_account_id, campaign_id, adset_id, ad_id, action_type,
    attribution_window, currency, count, value, updated_at"""
_SCOPE = """r.organization_id = :organization_id AND r.ad_account_id IN :ad_accounts
    AND r.level IN ('CAMPAIGN', 'ADSET', 'AD') AND r.date BETWEEN :since AND :until"""

# Each raw row's entries, one per (list, action type, key), then one row per (action type, window)
# with the count of `actions` and the value of `action_values` side by side.
_POSTGRES = f"""
INSERT INTO meta_conversions_daily ({_COLUMNS})
SELECT r.organization_id, r.date, r.level, r.ad_account_id, r.campaign_id, r.adset_id, r.ad_id,
    x.action_type, x.attribution_window, r.currency, x.count, x.value, :now
FROM meta_raw_insights r
CROSS JOIN LATERAL (
    SELECT e.item ->> 'action_type' AS action_type,
        CASE k.key WHEN 'value' THEN :default_window ELSE k.key END AS attribution_window,
        MAX(CASE WHEN e.list = 'actions' THEN k.value::bigint END) AS count,
        MAX(CASE WHEN e.list = 'action_values' THEN k.value::numeric(18, 2) END) AS value
    FROM (
        SELECT 'actions' AS list, item FROM jsonb_array_elements(COALESCE(r."row" -> 'actions', '[]')) AS item
        UNION ALL
        SELECT 'action_values', item FROM jsonb_array_elements(COALESCE(r."row" -> 'action_values', '[]')) AS item
    ) e
    CROSS JOIN LATERAL jsonb_each_text(e.item) k
    WHERE k.key = 'value' OR k.key IN :windows
    GROUP BY 1, 2
) x
WHERE {_SCOPE}
"""
_SQLITE = f"""
INSERT INTO meta_conversions_daily ({_COLUMNS})
SELECT r.organization_id, r.date, r.level, r.ad_account_id, r.campaign_id, r.adset_id, r.ad_id,
    x.action_type, x.attribution_window, r.currency,
    MAX(CASE WHEN x.list = 'actions' THEN CAST(x.number AS INTEGER) END),
    MAX(CASE WHEN x.list = 'action_values' THEN x.number END),
    :now
FROM meta_raw_insights r
JOIN (
    SELECT r2.id AS raw_id, l.list, json_extract(e.value, '$.action_type') AS action_type,
        CASE k.key WHEN 'value' THEN :default_window ELSE k.key END AS attribution_window,
        k.value AS number
    FROM meta_raw_insights r2
    JOIN (SELECT 'actions' AS list UNION ALL SELECT 'action_values') l
    JOIN json_each(r2."row", '$.' || l.list) e
    JOIN json_each(e.value) k
    WHERE (k.key = 'value' OR k.key IN :windows) AND {_SCOPE.replace("r.", "r2.")}
) x ON x.raw_id = r.id
GROUP BY r.id, x.action_type, x.attribution_window
"""


def refresh_conversions(
    conn: sa.Connection,
    organization_id: str,
    ad_account_ids: Sequence[str],
    since: dt.date,
    until: dt.date,
    now: dt.datetime,
    windows: Sequence[str],
) -> int:
    """Make the scope's `meta_conversions_daily` rows those of its raw rows, in the caller's
    transaction under the organization's lock; `windows` are the window keys read beside `value`
    (Meta's current windows). Returns the rows written."""
    lock_organization(conn, organization_id)
    t = meta_conversions_daily
    accounts = list(ad_account_ids)
    conn.execute(
        t.delete()
        .where(t.c.organization_id == organization_id)
        .where(t.c.ad_account_id.in_(accounts))
        .where(t.c.date.between(since, until))
    )
    statement = sa.text(_POSTGRES if is_postgres(conn) else _SQLITE).bindparams(
        sa.bindparam("ad_accounts", expanding=True),
        sa.bindparam("windows", expanding=True),
        sa.bindparam("since", type_=sa.Date),
        sa.bindparam("until", type_=sa.Date),
        sa.bindparam("now", type_=t.c.updated_at.type),
    )
    result = conn.execute(
        statement,
        {
            "organization_id": organization_id,
            "ad_accounts": accounts,
            "since": since,
            "until": until,
            "now": now,
            "windows": list(windows),
            "default_window": DEFAULT_WINDOW,
        },
    )
    return result.rowcount
