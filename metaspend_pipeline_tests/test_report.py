"""`metaspend roas --format csv` neutralizes text a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import sqlalchemy as sa
from click.testing import CliRunner

from metaspend_pipeline.cli import cli
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage.schema import meta_roas_by_campaign

DAY = dt.date(2026, 10, 4)
# lead campaign ids come from URL parameters that visitors control
HOSTILE = {
    '=HYPERLINK("http://evil.example","x")': '\'=HYPERLINK("http://evil.example","x")',
    "+1+1": "'+1+1",
    "-2+3": "'-2+3",
    "@SUM(A1)": "'@SUM(A1)",
    # control characters are escaped before the formula check (safe_text): no tab or CR reaches a cell
    "\tcmd": "\\x09cmd",
    "\rcmd": "\\x0dcmd",
    "\t=1+1": "\\x09=1+1",
    "=\x1b[31m": "'=\\x1b[31m",
    "a=b": "a=b",
    "1000001686726": "1000001686726",
}


def test_formula_cells_are_quoted_and_numbers_stay_numbers(env: dict[str, str]) -> None:
    engine = db.migrated_engine(env["METASPEND_DATABASE_URL"])
    rows = [
        {
            "organization_id": "acme",
            "date": DAY,
            "campaign_id": campaign_id,
            "currency": "USD",
            "leads_count": 2,
            "sales_count": 1,
            "revenue": Decimal("-5.00") if campaign_id == "a=b" else Decimal("30.00"),
            "spend": Decimal("10.00") + n,
            "avg_ticket": None,
            "conversion_rate": None,
            "roas": None,
            "revenue_currency_mismatch": False,
            "updated_at": dt.datetime.now(dt.UTC),
        }
        for n, campaign_id in enumerate(HOSTILE)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(meta_roas_by_campaign), rows)
        # the day was loaded (a successful fetch covers it), so the report has something to say
        raw_store.log_fetch(conn, "run-1", raw_store.FetchOutcome("acme", "act_1", DAY, DAY, "OK"))
    result = CliRunner().invoke(
        cli,
        ["roas", "--org", "acme", "--group-by", "campaign", "--from", str(DAY), "--to", str(DAY), "--format", "csv"],
    )
    assert result.exit_code == 0, result.output
    table = list(csv.reader(io.StringIO(result.stdout, newline="")))
    assert table[0][:6] == ["campaignId", "campaignName", "leadsCount", "salesCount", "revenue", "spend"]
    by_spend = {Decimal(r[5]): r for r in table[1:]}
    for n, (campaign_id, written) in enumerate(HOSTILE.items()):
        row = by_spend[Decimal("10.00") + n]
        assert row[0] == written, campaign_id
        assert row[1] == ""  # no name fetched for these ids
        assert row[2:4] == ["2", "1"]
        assert row[table[0].index("currency")] == "USD"
    negative = Decimal("10.00") + list(HOSTILE).index("a=b")
    assert by_spend[negative][4] == "-5.00"  # a negative amount is still a number, not quoted text
