"""Names from Meta reach the terminal escaped, and the warehouse as Meta sent them. The cases live
in `bad_inputs.py` (PRINTED_NAMES), which docs/bad-inputs.md is rendered from."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from metaspend_pipeline import objects
from metaspend_pipeline.cli import cli
from metaspend_pipeline.cli.progress import RunProgress
from metaspend_pipeline.credentials import MetaAdAccount
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.sandbox.server import Sandbox
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.schema import (
    BREAKDOWN_TABLES,
    REACH_TABLES,
    connected_account,
    meta_campaign,
    meta_roas_by_campaign,
    meta_spend_daily,
)
from metaspend_pipeline_tests.bad_inputs import PRINTED_NAMES, USD_ACCOUNT, PrintedName
from metaspend_pipeline_tests.conftest import ascii_id

DAY = dt.date(2026, 10, 1)
NOW = dt.datetime(2026, 10, 2, tzinfo=dt.UTC)
# What a terminal would obey: C0 but the new lines of the output itself, DEL, C1, the bidi controls.
OBEYED = [chr(c) for c in (*range(0x00, 0x0A), *range(0x0B, 0x20), *range(0x7F, 0xA0))]
OBEYED += ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]


def _load(url: str, sandbox: Sandbox, api_settings: MetaApiSettings, campaign_id: str) -> None:
    """The campaign's name through the client and the objects fetch, and one day of its ROAS."""
    token = next(o.token for o in sandbox.world.organizations if USD_ACCOUNT in o.ad_accounts)
    account = MetaAdAccount("acme", USD_ACCOUNT, "FACEBOOK", None, MetaClient(token, api_settings))
    engine = db.engine_for(url)
    objects.fetch_objects(engine, account, NOW)
    with engine.begin() as conn:
        conn.execute(
            connected_account.insert().values(
                id="ca-acme", organization_id="acme", provider="FACEBOOK", status="CONNECTED",
                ad_accounts=[USD_ACCOUNT], created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
        conn.execute(
            meta_spend_daily.insert().values(
                organization_id="acme", provider="FACEBOOK", date=DAY, level="CAMPAIGN", ad_account_id=USD_ACCOUNT,
                campaign_id=campaign_id, currency="USD", spend=Decimal("100.00"), created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
        conn.execute(
            meta_roas_by_campaign.insert().values(
                organization_id="acme", date=DAY, campaign_id=campaign_id, currency="USD", leads_count=4,
                sales_count=1, revenue=Decimal("250.00"), spend=Decimal("100.00"), roas=Decimal("2.5"),
                revenue_currency_mismatch=False, updated_at=NOW,
            )
        )  # fmt: skip


def roas(fmt: str) -> str:
    result = CliRunner().invoke(
        cli, ["roas", "--org", "acme", "--from", DAY.isoformat(), "--to", DAY.isoformat(), "--format", fmt]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("case", PRINTED_NAMES, ids=lambda c: ascii_id(c.name))
def test_a_name_from_meta_is_printed_escaped_and_stored_as_sent(
    env: dict[str, str], sandbox: Sandbox, api_settings: MetaApiSettings, case: PrintedName
) -> None:
    """Before: `roas --format table` and `--format csv` printed OSC and CSI sequences as they came."""
    campaign = sandbox.world.accounts[USD_ACCOUNT].campaigns[0]
    sandbox.rename(campaign.id, case.name)
    _load(env["METASPEND_DATABASE_URL"], sandbox, api_settings, campaign.id)
    with db.engine_for(env["METASPEND_DATABASE_URL"]).connect() as conn:
        stored = conn.execute(sa.select(meta_campaign.c.name).where(meta_campaign.c.id == campaign.id)).scalar_one()
    assert stored == case.name  # as Meta sent it
    table, csv = roas("table"), roas("csv").replace("\r\n", "\n")
    for output in (table, csv):
        assert case.shown in output
        assert [c for c in OBEYED if c in output] == []
    [item] = json.loads(roas("json"))
    assert item["campaignName"] == case.name  # JSON escapes controls itself, and the value is exact
    assert [c for c in OBEYED if c in roas("json")] == []


@pytest.mark.parametrize("case", PRINTED_NAMES, ids=lambda c: ascii_id(c.name))
def test_breakdown_and_reach_print_names_escaped(
    env: dict[str, str], sandbox: Sandbox, api_settings: MetaApiSettings, case: PrintedName
) -> None:
    campaign = sandbox.world.accounts[USD_ACCOUNT].campaigns[0]
    sandbox.rename(campaign.id, case.name)
    _load(env["METASPEND_DATABASE_URL"], sandbox, api_settings, campaign.id)
    month = DAY.replace(day=1)
    with db.engine_for(env["METASPEND_DATABASE_URL"]).begin() as conn:
        conn.execute(
            BREAKDOWN_TABLES["country"].insert().values(
                organization_id="acme", provider="FACEBOOK", date=DAY, level="CAMPAIGN", ad_account_id=USD_ACCOUNT,
                campaign_id=campaign.id, country="US", currency="USD", spend=Decimal("100.00"), impressions=900,
                clicks=9, created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
        conn.execute(
            REACH_TABLES["month"].insert().values(
                organization_id="acme", ad_account_id=USD_ACCOUNT, level="CAMPAIGN", campaign_id=campaign.id,
                month_start=month, period_end=DAY, currency="USD", reach=400, frequency=Decimal("2.25"),
                impressions=900, spend=Decimal("100.00"), updated_at=NOW,
            )
        )  # fmt: skip
    commands = [
        ["breakdown", "--org", "acme", "--by", "country", "--from", DAY.isoformat(), "--to", DAY.isoformat()],
        ["reach", "--org", "acme", "--period", "month", "--from", month.isoformat(), "--to", month.isoformat()],
    ]
    for command in commands:
        for fmt in ("table", "csv", "json"):
            result = CliRunner().invoke(cli, [*command, "--format", fmt])
            assert result.exit_code == 0, result.output
            assert [c for c in OBEYED if c in result.stdout.replace("\r\n", "\n")] == [], (command[0], fmt)
            if fmt == "json":
                assert json.loads(result.stdout)[0]["campaignName"] == case.name
            else:
                assert case.shown in result.stdout


def test_a_name_postgresql_cannot_hold_is_stored_with_replacement_characters(
    env: dict[str, str], sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    """A NUL (which PostgreSQL's text refuses) or an unpaired surrogate in a name used to fail the names
    refresh of the ad account on every run; it is stored with U+FFFD in their place, on both backends."""
    campaign = sandbox.world.accounts[USD_ACCOUNT].campaigns[0]
    sandbox.rename(campaign.id, "Black\x00Friday \ud800sale")
    _load(env["METASPEND_DATABASE_URL"], sandbox, api_settings, campaign.id)
    with db.engine_for(env["METASPEND_DATABASE_URL"]).connect() as conn:
        stored = conn.execute(sa.select(meta_campaign.c.name).where(meta_campaign.c.id == campaign.id)).scalar_one()
    assert stored == "Black\ufffdFriday \ufffdsale"
    assert "Black\ufffdFriday \ufffdsale" in roas("table")


def test_run_progress_lines_are_escaped(tmp_path: Path) -> None:
    """`metaspend backfill --wait` and the demo print the run's log lines (Meta's error messages among them)."""
    progress = tmp_path / "progress.jsonl"
    name = PRINTED_NAMES[0].name
    entries = [
        {"kind": "log", "step": "meta_raw_insights", "t": 1.0, "message": f"campaign {name}: (#100) bad\x1b[2J"},
        {"kind": "step_failed", "step": "meta_raw_insights", "t": 2.0, "message": f"Meta said \x1b]0;{name}\x07"},
    ]
    progress.write_text("".join(json.dumps(e) + "\n" for e in entries))
    lines: list[str] = []
    RunProgress(progress, lines.append, started=0.0).poll()
    assert lines == [
        f"[   1.0s] meta_raw_insights: campaign {PRINTED_NAMES[0].shown}: (#100) bad\\x1b[2J",
        f"[   2.0s] meta_raw_insights: FAILED: Meta said \\x1b]0;{PRINTED_NAMES[0].shown}\\x07",
    ]


class _RefusingWebserver(http.server.BaseHTTPRequestHandler):
    """A Dagster webserver that refuses every backfill with a message holding terminal escapes."""

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        message = f"backfill refused: {PRINTED_NAMES[0].name}"
        body = json.dumps({"data": {"launchPartitionBackfill": {"__typename": "PythonError", "message": message}}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


def test_an_error_line_quoting_another_program_is_escaped(env: dict[str, str]) -> None:
    """`metaspend: error: ...` quotes what a server said (here the webserver's refusal of a backfill):
    one line on the terminal, the sequences escaped."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingWebserver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = CliRunner().invoke(
            cli,
            [
                "backfill",
                "--from",
                "2026-10-01",
                "--to",
                "2026-10-02",
                "--dagster-url",
                f"http://127.0.0.1:{server.server_address[1]}",
            ],
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 2, result.output
    assert f"refused the backfill (PythonError): backfill refused: {PRINTED_NAMES[0].shown}\n" in result.stderr
    assert [c for c in OBEYED if c in result.stderr.removesuffix("\n")] == []
