"""Breakdowns and reach through the client, against the sandbox over real loopback HTTP: what is asked
for, what comes back, and bad rows refused naming the ad account, the day or period, and the field."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.errors import MetaDataError
from metaspend_pipeline.meta.models import BREAKDOWN_SETS
from metaspend_pipeline.sandbox.server import Sandbox
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline_tests.dates import day, iso
from metaspend_pipeline_tests.meta.test_client import ACCOUNT, insight_requests, token_of

SINCE, UNTIL = day(1), day(7)
IDS = ("campaign_id", "adset_id", "ad_id")


@pytest.mark.parametrize("name", list(BREAKDOWN_SETS))
@pytest.mark.parametrize("use_async", [False, True])
def test_a_breakdown_is_one_request_series_for_the_range_and_equals_the_sandbox(
    sandbox: Sandbox, api_settings: MetaApiSettings, name: str, use_async: bool
) -> None:
    fields = BREAKDOWN_SETS[name]
    client = MetaClient(token_of(sandbox), api_settings)
    rows = list(client.insights(ACCOUNT, "adset", SINCE, UNTIL, use_async=use_async, breakdown=fields))
    got = sorted(
        (r.date.isoformat(), r.campaign_id, r.adset_id, r.ad_id, *r.breakdown, r.spend, r.impressions, r.clicks)
        for r in rows
    )
    truth = sorted(
        (
            t["date"],
            *(t[i] for i in IDS),
            *(t[f] for f in fields),
            Decimal(str(t["spend"])),
            t["impressions"],
            t["clicks"],
        )
        for t in sandbox.world.breakdown_truth(ACCOUNT, "adset", SINCE, UNTIL, name)
    )
    assert got == truth and len(got) > 7
    # one series: the first request (or the report run's POST) asks, the others page on with a cursor
    log = insight_requests(sandbox)
    [asked] = [r for r in log if "after" not in r["params"] and (r["method"] == "POST" or not use_async)]
    if use_async:
        assert [r["method"] for r in log].count("POST") == 1 and client.stats.async_jobs == 1
    else:
        assert len(log) == client.stats.pages
    params = asked["params"]
    assert params["breakdowns"] == ",".join(fields)
    assert params["time_increment"] == "1"
    assert json.loads(params["time_range"]) == {"since": str(SINCE), "until": str(UNTIL)}
    # Meta's conversions are read from the unbroken rows only: a breakdown asks for none of them
    assert "actions" not in params["fields"] and "action_attribution_windows" not in params


def test_reach_is_one_request_for_the_whole_period(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    client = MetaClient(token_of(sandbox), api_settings)
    rows = list(client.reach(ACCOUNT, "campaign", SINCE, UNTIL))
    got = sorted((r.campaign_id, r.reach, r.frequency, r.impressions, r.spend, r.currency) for r in rows)
    truth = sorted(
        (t["campaign_id"], t["reach"], Decimal(t["frequency"]), t["impressions"], Decimal(t["spend"]), t["currency"])
        for t in sandbox.world.reach_truth(ACCOUNT, "campaign", SINCE, UNTIL)
    )
    assert got == truth and len(got) >= 2
    [asked] = insight_requests(sandbox)
    assert asked["params"]["time_increment"] == "all_days"
    assert json.loads(asked["params"]["time_range"]) == {"since": str(SINCE), "until": str(UNTIL)}
    assert {"reach", "frequency"} <= set(asked["params"]["fields"].split(","))
    for r in rows:  # frequency is Meta's impressions / reach, kept to six decimals
        assert abs(r.frequency - Decimal(r.impressions) / r.reach) < Decimal("0.000001")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("age", "25-34\n", "field age '25-34\\n' is missing or not a breakdown value"),
        ("gender", None, "field gender None is missing or not a breakdown value"),
        ("age", "x" * 100, "is missing or not a breakdown value (1 to"),
    ],
)
def test_a_bad_breakdown_value_is_refused_naming_account_day_and_field(
    sandbox: Sandbox, api_settings: MetaApiSettings, field: str, value: str | None, message: str
) -> None:
    sandbox.add_faults([{"kind": "corrupt_row", "match": "insights", "field": field, "value": value, "times": 5}])
    client = MetaClient(token_of(sandbox), api_settings)
    with pytest.raises(MetaDataError) as info:
        list(client.insights(ACCOUNT, "campaign", SINCE, UNTIL, use_async=False, breakdown=("age", "gender")))
    assert message in str(info.value)
    assert f"ad account {ACCOUNT}, campaign row of 20" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("reach", "12.5", "field reach '12.5' is not a whole number"),
        ("reach", "999999999999", "is larger than impressions"),
        ("date_stop", iso(6), f"field date_stop '{iso(6)}' is not {iso(7)}: expected one row for the whole period"),
        ("frequency", "-1", "field frequency '-1'"),
    ],
)
def test_a_bad_reach_row_is_refused_naming_account_period_and_field(
    sandbox: Sandbox, api_settings: MetaApiSettings, field: str, value: str, message: str
) -> None:
    sandbox.add_faults([{"kind": "corrupt_row", "match": "insights", "field": field, "value": value, "times": 5}])
    with pytest.raises(MetaDataError) as info:
        list(MetaClient(token_of(sandbox), api_settings).reach(ACCOUNT, "campaign", SINCE, UNTIL))
    assert message in str(info.value)
    assert f"ad account {ACCOUNT}, campaign reach of {SINCE}..{UNTIL}" in str(info.value)


def test_frequency_with_more_decimals_is_rounded_half_up_to_six(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    sandbox.add_faults([{"kind": "corrupt_row", "match": "insights", "field": "frequency", "value": "2.0000005"}])
    rows = list(MetaClient(token_of(sandbox), api_settings).reach(ACCOUNT, "campaign", SINCE, UNTIL))
    assert Decimal("2.000001") in {r.frequency for r in rows}
