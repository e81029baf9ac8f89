"""Names of campaigns, ad sets and ads: the sandbox's object edges, the client, the tables, the
fetch cadence, the named ROAS views and `metaspend roas`, against the sandbox's truth."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
from decimal import Decimal

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner

from metaspend_pipeline import objects
from metaspend_pipeline.cli import cli
from metaspend_pipeline.credentials import MetaAdAccount
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.errors import MetaDataError
from metaspend_pipeline.meta.models import InsightRow
from metaspend_pipeline.sandbox.control import SandboxAdmin
from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage.schema import (
    NAMED_ROAS_VIEWS,
    OBJECT_TABLES,
    ROAS_TABLES,
    meta_fetch_log,
    meta_raw_insights,
)
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import TODAY, day, iso
from metaspend_pipeline_tests.defs.test_assets import spend_rows, truth_rows

ACCOUNT = "act_1000000001"
ORG = "demo-org-1"
KINDS = ("campaign", "adset", "ad")
NOW = dt.datetime.combine(TODAY - dt.timedelta(days=1), dt.time(12), dt.UTC)
START, END = iso(1), iso(3)


def token_of(sandbox: Sandbox, organization: str = ORG) -> str:
    return next(o.token for o in sandbox.world.organizations if o.organization_id == organization)


def ad_account(sandbox: Sandbox, settings: MetaApiSettings, account: str = ACCOUNT) -> MetaAdAccount:
    return MetaAdAccount(ORG, account, "INSTAGRAM", None, MetaClient(token_of(sandbox), settings))


def meta_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").astimezone(dt.UTC)


def truth(url: str, kind: str, account: str = ACCOUNT) -> dict[str, tuple]:
    """The sandbox's own list of the ad account's objects (admin endpoint), as table rows."""
    out = {}
    for o in SandboxAdmin(url).objects(account, kind):
        parents = {"campaign": ("objective",), "adset": ("campaign_id",), "ad": ("campaign_id", "adset_id")}[kind]
        out[o["id"]] = (
            o["name"],
            o["status"],
            o["effective_status"],
            *(o[p] for p in parents),
            meta_time(o["created_time"]),
            meta_time(o["updated_time"]),
        )
    return out


def stored(engine: sa.Engine, kind: str, account: str = ACCOUNT) -> dict[str, tuple]:
    t = OBJECT_TABLES[kind]
    parents = {"campaign": ("objective",), "adset": ("campaign_id",), "ad": ("campaign_id", "adset_id")}[kind]
    query = sa.select(
        t.c.id,
        t.c.name,
        t.c.status,
        t.c.effective_status,
        *(t.c[p] for p in parents),
        t.c.created_time,
        t.c.updated_time,
    ).where(t.c.organization_id == ORG, t.c.ad_account_id == account)
    with engine.connect() as conn:
        return {
            r[0]: tuple(
                v.replace(tzinfo=dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo is None else v for v in r[1:]
            )
            for r in conn.execute(query)
        }


def last_seen(engine: sa.Engine, kind: str) -> set[dt.datetime]:
    t = OBJECT_TABLES[kind]
    with engine.connect() as conn:
        values = conn.execute(sa.select(t.c.last_seen_at).where(t.c.ad_account_id == ACCOUNT)).scalars()
        return {v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC) for v in values}


def edge_requests(sandbox: Sandbox) -> list[dict]:
    return [r for r in sandbox.requests_log() if r["endpoint"] == "edge"]


# --- the sandbox -----------------------------------------------------------------------------------


def test_edges_hide_archived_and_deleted_unless_a_status_filter_lists_them(
    sandbox: Sandbox, sandbox_server: SandboxServer, api_settings: MetaApiSettings
) -> None:
    headers = {"Authorization": f"Bearer {token_of(sandbox)}"}
    url = f"{api_settings.base_url}/{ACCOUNT}/ads"
    everything = truth(sandbox_server.url, "ad")
    hidden = {i for i, row in everything.items() if row[2] in {"ARCHIVED", "DELETED"}}
    assert hidden and len(hidden) < len(everything)  # the sandbox has both kinds, or this test proves nothing

    plain = requests.get(url, params={"fields": "id,effective_status", "limit": 100}, headers=headers, timeout=5).json()
    assert {o["id"] for o in plain["data"]} == set(everything) - hidden

    statuses = json.dumps(["ACTIVE", "PAUSED", "ADSET_PAUSED", "CAMPAIGN_PAUSED", "ARCHIVED", "DELETED"])
    legacy = requests.get(url, params={"effective_status": statuses, "limit": 100}, headers=headers, timeout=5).json()
    assert {o["id"] for o in legacy["data"]} == set(everything)

    # paged like insights: an absolute `next` that carries the token
    first = requests.get(url, params={"effective_status": statuses, "limit": 5}, headers=headers, timeout=5).json()
    assert first["paging"]["next"].startswith(api_settings.base_url)
    assert f"access_token={token_of(sandbox)}" in first["paging"]["next"]
    assert list(first["data"][0]) == ["id"]  # only what `fields` asks for (Meta's default: id)


def test_insights_carry_names_and_objective_on_request(sandbox: Sandbox, sandbox_server: SandboxServer) -> None:
    client = MetaClient(token_of(sandbox), MetaApiSettings(graph_api_url=sandbox_server.url))
    params = {
        "level": "ad",
        "fields": "ad_id,adset_id,campaign_id,ad_name,adset_name,campaign_name,objective",
        "time_range": json.dumps({"since": iso(1), "until": iso(1)}),
        "filtering": json.dumps([{"field": "ad.effective_status", "operator": "IN", "value": ["ACTIVE", "DELETED"]}]),
    }
    rows = client.request("GET", f"{ACCOUNT}/insights", params, context="test")["data"]
    campaigns, adsets, ads = (truth(sandbox_server.url, k) for k in KINDS)
    spent = sandbox.world.truth(ACCOUNT, "ad", day(1), day(1))
    assert sorted(r["ad_id"] for r in rows) == sorted(
        r["ad_id"] for r in spent if ads[r["ad_id"]][2] in {"ACTIVE", "DELETED"}
    )
    for row in rows:
        assert row["ad_name"] == ads[row["ad_id"]][0]
        assert row["adset_name"] == adsets[row["adset_id"]][0]
        assert (row["campaign_name"], row["objective"]) == (
            campaigns[row["campaign_id"]][0],
            campaigns[row["campaign_id"]][3],
        )


# --- the client and the tables -------------------------------------------------------------------


def test_objects_fetched_equal_the_sandbox_truth_archived_and_deleted_included(
    engine: sa.Engine, sandbox: Sandbox, sandbox_server: SandboxServer, api_settings: MetaApiSettings
) -> None:
    counts = objects.fetch_objects(engine, ad_account(sandbox, api_settings), NOW)
    for kind in KINDS:
        expected = truth(sandbox_server.url, kind)
        assert stored(engine, kind) == expected, kind
        assert counts[kind] == len(expected)
        assert last_seen(engine, kind) == {NOW}
    statuses = {row[2] for row in truth(sandbox_server.url, "ad").values()}
    assert {"ARCHIVED", "DELETED"} <= statuses
    names = {row[0] for row in truth(sandbox_server.url, "campaign").values()}
    assert any("\N{EN DASH}" in n for n in names)  # non-ASCII names survive the round trip


def test_request_count_is_three_plus_one_per_extra_page(
    engine: sa.Engine, sandbox: Sandbox, sandbox_server: SandboxServer, api_settings: MetaApiSettings
) -> None:
    page = 4
    account = ad_account(sandbox, dataclasses.replace(api_settings, page_size=page))
    sizes = {kind: len(truth(sandbox_server.url, kind)) for kind in KINDS}
    expected = sum(max(1, math.ceil(n / page)) for n in sizes.values())
    assert expected > 3  # pages beyond the first exist
    assert expected == 3 + sum(max(0, math.ceil(n / page) - 1) for n in sizes.values())

    first = objects.refresh_account(engine, account, NOW, refresh_hours=24)
    assert (first.reason, first.requests, first.error) == ("never fetched", expected, None)
    assert len(edge_requests(sandbox)) == expected
    assert {json.loads(r["params"]["filtering"])[0]["value"].count("DELETED") for r in edge_requests(sandbox)} == {1}

    fresh = objects.refresh_account(engine, account, NOW + dt.timedelta(hours=23), refresh_hours=24)
    assert (fresh.reason, fresh.requests) == (None, 0)

    stale = objects.refresh_account(engine, account, NOW + dt.timedelta(hours=24), refresh_hours=24)
    assert stale.reason is not None and "META_OBJECTS_REFRESH_HOURS" in stale.reason
    assert stale.requests == expected


def raw_row(day: dt.date, ad_id: str, spend: str) -> InsightRow:
    return InsightRow(
        ad_account_id=ACCOUNT,
        level="ad",
        date=day,
        campaign_id="1",
        adset_id="2",
        ad_id=ad_id,
        currency="USD",
        spend=Decimal(spend),
        impressions=1,
        clicks=0,
        raw={"ad_id": ad_id, "spend": spend},
    )


def test_an_ad_unknown_to_the_tables_triggers_a_fetch(
    engine: sa.Engine, sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    account = ad_account(sandbox, api_settings)
    objects.fetch_objects(engine, account, NOW)
    first = day(1)
    known_ad = next(iter(stored(engine, "ad")))
    with engine.begin() as conn:
        raw_store.replace_raw_insights(
            conn,
            organization_id=ORG,
            provider="INSTAGRAM",
            ad_account_id=ACCOUNT,
            level="AD",
            since=first,
            until=first,
            rows=[raw_row(first, known_ad, "1.00")],
            fetched_at=NOW,
        )
    assert objects.refresh_account(engine, account, NOW, first, first, refresh_hours=24).reason is None
    with engine.begin() as conn:
        conn.execute(meta_raw_insights.insert().values(
            organization_id=ORG, provider="INSTAGRAM", ad_account_id=ACCOUNT, level="AD", date=first,
            row={"ad_id": "999000111", "spend": "2.00"}, fetched_at=NOW,
            campaign_id="1", adset_id="2", ad_id="999000111", currency="USD", spend=Decimal("2.00"),
        ))  # fmt: skip
    result = objects.refresh_account(engine, account, NOW, first, first, refresh_hours=24)
    assert result.reason == f"1 ads in the insights of {iso(1)}..{iso(1)} are new"
    assert result.requests >= 3


def test_a_renamed_object_updates_name_and_last_seen_at(
    engine: sa.Engine, sandbox: Sandbox, sandbox_server: SandboxServer, api_settings: MetaApiSettings
) -> None:
    account = ad_account(sandbox, api_settings)
    objects.fetch_objects(engine, account, NOW)
    campaign_id, before = next(iter(stored(engine, "campaign").items()))
    admin = SandboxAdmin(sandbox_server.url)
    admin.rename(campaign_id, "US Black Friday – Retargeting (copy) ✓")  # noqa: RUF001 - as advertisers write
    later = NOW + dt.timedelta(hours=25)
    assert objects.refresh_account(engine, account, later, refresh_hours=24).error is None
    after = stored(engine, "campaign")[campaign_id]
    assert after[0] == "US Black Friday – Retargeting (copy) ✓"  # noqa: RUF001
    assert after == truth(sandbox_server.url, "campaign")[campaign_id]  # updated_time moved with the rename
    assert after[1:5] == before[1:5]
    assert last_seen(engine, "campaign") == {later}


def test_malformed_objects_are_refused_naming_the_ad_account_and_field(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    client = MetaClient(token_of(sandbox), api_settings)
    cases = [
        ("/adsets", "adset", "campaign_id", "\uff11\uff12\uff13"),  # full-width digits: isdigit() but not an id
        ("/ads", "ad", "created_time", "2026-01-15 10:00"),
        ("/campaigns", "campaign", "effective_status", 3),
        ("/campaigns", "campaign", "name", None),
    ]
    for match, kind, field, value in cases:
        sandbox.add_faults([{"kind": "corrupt_row", "match": match, "field": field, "value": value}])
        with pytest.raises(MetaDataError, match=f"ad account {ACCOUNT}, {kind} .*field {field}"):
            list(client.objects(ACCOUNT, kind))


# --- through the pipeline: names in the views and in `metaspend roas` ---------------------------------


def test_names_appear_in_the_views_and_in_metaspend_roas(pipeline: Pipeline, sandbox_server: SandboxServer) -> None:
    assert pipeline.run(START, END).success
    campaigns, adsets, ads = (truth(sandbox_server.url, k) for k in KINDS)

    with pipeline.engine.connect() as conn:
        for group in KINDS:
            view = NAMED_ROAS_VIEWS[group]
            count = conn.execute(sa.text(f"SELECT count(*) FROM {view}")).scalar_one()
            table_count = conn.execute(sa.select(sa.func.count()).select_from(ROAS_TABLES[group])).scalar_one()
            assert count == table_count > 0
        rows = conn.execute(
            sa.text(
                "SELECT ad_id, ad_name, ad_effective_status, adset_id, adset_name, campaign_id, campaign_name, "
                "objective, spend FROM meta_roas_by_ad_named WHERE organization_id = :org AND ad_id IN "
                "(SELECT id FROM meta_ad WHERE ad_account_id = :account)"
            ),
            {"org": ORG, "account": ACCOUNT},
        ).all()
    spent = {r["ad_id"] for r in pipeline.sandbox.world.truth(ACCOUNT, "ad", day(1), day(3))}
    assert {r[0] for r in rows} == spent
    for ad_id, ad_name, ad_status, adset_id, adset_name, campaign_id, campaign_name, objective, _ in rows:
        assert (ad_name, ad_status) == (ads[ad_id][0], ads[ad_id][2])
        assert (adset_id, adset_name) == (ads[ad_id][4], adsets[adset_id][0])
        assert (campaign_id, campaign_name, objective) == (
            ads[ad_id][3],
            campaigns[campaign_id][0],
            campaigns[campaign_id][3],
        )

    result = CliRunner().invoke(cli, ["roas", "--org", ORG, "--group-by", "ad", "--from", START, "--to", END])
    assert result.exit_code == 0, result.output
    items = [i for i in json.loads(result.output) if i["adId"] in ads]
    assert sorted(i["adId"] for i in items) == sorted(spent)
    for item in items:
        assert list(item)[:7] == ["adId", "adName", "adsetId", "adsetName", "campaignId", "campaignName", "leadsCount"]
        ad = ads[item["adId"]]
        assert (item["adName"], item["adsetId"], item["campaignId"]) == (ad[0], ad[4], ad[3])
        assert (item["adsetName"], item["campaignName"]) == (adsets[ad[4]][0], campaigns[ad[3]][0])

    by_campaign = CliRunner().invoke(cli, ["roas", "--org", ORG, "--from", START, "--to", END, "--format", "csv"])
    header, *lines = by_campaign.output.splitlines()
    assert header.startswith("campaignId,campaignName,leadsCount,")
    assert any(campaigns[c][0] in line for c in campaigns for line in lines if line.startswith(c))


def test_a_failing_objects_fetch_does_not_fail_or_alter_the_spend_fetch(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline.sandbox.add_faults([{"kind": "permission", "match": "/campaigns", "times": 1000}])
    with caplog.at_level(logging.ERROR, logger="metaspend_pipeline.objects"):
        result = pipeline.run(START, END)
    assert result.success
    assert spend_rows(pipeline.engine) == truth_rows(pipeline, start=START, end=END)
    with pipeline.engine.connect() as conn:
        log = conn.execute(sa.select(meta_fetch_log.c.status, meta_fetch_log.c.error)).all()
        assert conn.execute(sa.select(sa.func.count()).select_from(OBJECT_TABLES["campaign"])).scalar_one() == 0
    accounts = sum(len(o.ad_accounts) for o in pipeline.sandbox.world.organizations)
    assert log == [("OK", None)] * accounts
    failures = [
        r.getMessage() for r in caplog.records if "names of campaigns, ad sets and ads not refreshed" in r.getMessage()
    ]
    assert len(failures) == accounts
    assert f"ad account {ACCOUNT}" in "\n".join(failures)


def test_an_object_listed_twice_in_one_batch_is_one_row(engine: sa.Engine) -> None:
    from metaspend_pipeline.meta.models import MetaObject
    from metaspend_pipeline.storage import objects as store

    def campaign(name: str) -> MetaObject:
        return MetaObject(
            ACCOUNT, "campaign", "120001", name, "ACTIVE", "ACTIVE", "OUTCOME_SALES", None, None, None, None
        )

    with engine.begin() as conn:
        assert store.upsert_objects(conn, ORG, "campaign", [campaign("Old"), campaign("New")], NOW) == 2
    assert stored(engine, "campaign") == {"120001": ("New", "ACTIVE", "ACTIVE", "OUTCOME_SALES", None, None)}


def test_the_refresh_interval_comes_from_the_environment(
    engine: sa.Engine, sandbox: Sandbox, api_settings: MetaApiSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = ad_account(sandbox, api_settings)
    objects.fetch_objects(engine, account, NOW)
    monkeypatch.setenv("META_OBJECTS_REFRESH_HOURS", "2")
    assert objects.refresh_account(engine, account, NOW + dt.timedelta(hours=1)).reason is None
    assert objects.refresh_account(engine, account, NOW + dt.timedelta(hours=2)).requests == 3
    monkeypatch.setenv("META_OBJECTS_REFRESH_HOURS", "soon")
    failed = objects.refresh_account(engine, account, NOW)
    assert failed.error is not None and "META_OBJECTS_REFRESH_HOURS must be a number" in failed.error
