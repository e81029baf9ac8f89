"""Reach and frequency in the sandbox's insights, as Meta's unique counts: people counted once over a
row's period and object, so they do not add up across days or objects; frequency is impressions /
reach; and the 13-month limit of unique counts beside the 37-month limit of everything."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
import requests

from metaspend_pipeline.sandbox.control import SandboxAdmin
from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline_tests.conftest import SANDBOX_SEED
from metaspend_pipeline_tests.dates import day
from metaspend_pipeline_tests.sandbox.insights import (
    LEVELS,
    get_insights,
    graph_error,
    insights_params,
    object_key,
    token_for,
)

ACCOUNT = "act_1000000001"
REACH = "reach,frequency,impressions,spend"
WEEK = (day(1), day(7))
MONTH = (day(1), day(28))
OLD = (day(-384), day(-378))  # more than 13 months ago, less than 37
RECENT = (day(-300), day(-294))  # less than 13 months ago
ANCIENT = (day(-1100), day(-1094))  # more than 37 months ago
COMPARED = ("campaign_id", "adset_id", "ad_id", "date_start", "date_stop", "reach", "frequency", "impressions", "spend")


def ask(
    sandbox: Sandbox,
    settings: MetaApiSettings,
    period: tuple[Any, Any],
    level: str,
    *,
    daily: bool = False,
    breakdowns: str | None = None,
    account: str = ACCOUNT,
) -> list[dict[str, Any]]:
    params = insights_params(
        token_for(sandbox, account), *period, level=level, fields=REACH, daily=daily, breakdowns=breakdowns
    )
    return get_insights(settings.base_url, account, params)


def comparable(row: dict[str, Any]) -> tuple[str | None, ...]:
    """A row of insights or of the reach truth as text, to compare the two."""
    return tuple(None if row.get(f) is None else str(row[f]) for f in COMPARED)


def reach_of(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], int]:
    return {object_key(r): int(r["reach"]) for r in rows}


def frequency(impressions: int, reach: int) -> str:
    """impressions / reach rounded half up to 6 decimals, computed exactly."""
    millionths = Fraction(impressions * 10**6, reach)
    rounded = int(millionths + Fraction(1, 2))
    return f"{rounded // 10**6}.{rounded % 10**6:06d}"


def assert_unique_counts(rows: list[dict[str, Any]]) -> None:
    """Reach a whole number of at most the impressions; frequency impressions / reach, at least 1."""
    assert rows
    for row in rows:
        reach, impressions = int(row["reach"]), int(row["impressions"])
        assert row["reach"] == str(reach)
        assert 1 <= reach <= impressions, row
        assert row["frequency"] == frequency(impressions, reach), row
        assert float(row["frequency"]) >= 1


@pytest.mark.parametrize("level", ["ad", "adset", "campaign"])
def test_a_weeks_reach_is_less_than_the_sum_of_its_days(
    sandbox: Sandbox, api_settings: MetaApiSettings, level: str
) -> None:
    week = ask(sandbox, api_settings, WEEK, level)
    days = ask(sandbox, api_settings, WEEK, level, daily=True)
    assert_unique_counts(week)
    assert_unique_counts(days)
    summed: dict[tuple[Any, ...], int] = {}
    for row in days:
        key = object_key(row)[1:]
        summed[key] = summed.get(key, 0) + int(row["reach"])
    week_reach = {key[1:]: value for key, value in reach_of(week).items()}
    assert week_reach.keys() == summed.keys()
    assert all(week_reach[key] <= summed[key] for key in summed)
    assert sum(week_reach[key] < summed[key] for key in summed) > len(summed) // 2

    # a day's row of a daily request is that day's reach over the day alone
    one_day = ask(sandbox, api_settings, (WEEK[0], WEEK[0]), level)
    assert reach_of(one_day) == {k: v for k, v in reach_of(days).items() if k[0] == WEEK[0].isoformat()}


def test_a_campaigns_reach_is_less_than_the_sum_of_its_ads(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    by_level = {level: ask(sandbox, api_settings, MONTH, level) for level in LEVELS}
    for rows in by_level.values():
        assert_unique_counts(rows)
    campaigns = {r["campaign_id"]: int(r["reach"]) for r in by_level["campaign"]}
    ads: dict[str, list[int]] = {}
    for row in by_level["ad"]:
        ads.setdefault(row["campaign_id"], []).append(int(row["reach"]))
    assert campaigns.keys() == ads.keys()
    for campaign, reach in campaigns.items():
        assert max(ads[campaign]) <= reach <= sum(ads[campaign])  # the union of its ads' people
    assert any(reach < sum(ads[campaign]) for campaign, reach in campaigns.items() if len(ads[campaign]) > 1)
    (account,) = by_level["account"]
    assert max(campaigns.values()) <= int(account["reach"]) <= sum(campaigns.values())


@pytest.mark.parametrize("level", LEVELS)
def test_the_reach_truth_is_what_insights_answer(
    sandbox: Sandbox, sandbox_server: SandboxServer, api_settings: MetaApiSettings, level: str
) -> None:
    account = "act_3000000002"  # JPY: spend without minor units
    answered = ask(sandbox, api_settings, MONTH, level, account=account)
    truth = SandboxAdmin(sandbox_server.url).reach_truth(account, level, MONTH[0].isoformat(), MONTH[1].isoformat())
    assert sorted(map(comparable, truth)) == sorted(map(comparable, answered))
    assert {r["currency"] for r in truth} == {"JPY"}
    assert {(r["date_start"], r["date_stop"]) for r in truth} == {(MONTH[0].isoformat(), MONTH[1].isoformat())}


def test_two_sandboxes_of_one_seed_reach_alike(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    ours = ask(sandbox, api_settings, WEEK, "ad")
    with SandboxServer(Sandbox(SANDBOX_SEED)) as other:
        settings = MetaApiSettings(graph_api_url=other.url, api_version=api_settings.api_version)
        assert ask(other.sandbox, settings, WEEK, "ad") == ours


@pytest.mark.parametrize(
    "breakdowns", ["age,gender", "country", "publisher_platform,platform_position,device_platform"]
)
def test_reach_with_breakdowns_shares_out_the_objects_reach(
    sandbox: Sandbox, api_settings: MetaApiSettings, breakdowns: str
) -> None:
    """The sandbox's model (Meta counts people per value): each row's reach its share of the
    object's, in proportion to its impressions, at least 1 and at most its impressions."""
    broken = ask(sandbox, api_settings, WEEK, "campaign", breakdowns=breakdowns)
    for row in broken:
        reach, impressions = int(row["reach"]), int(row["impressions"])
        assert reach <= impressions and (reach >= 1 or impressions == 0)
        if reach:
            assert row["frequency"] == frequency(impressions, reach)
    whole = reach_of(ask(sandbox, api_settings, WEEK, "campaign"))
    shares: dict[tuple[Any, ...], int] = {}
    for row in broken:
        shares[object_key(row)] = shares.get(object_key(row), 0) + int(row["reach"])
    assert shares.keys() == whole.keys()
    assert all(whole[key] <= shares[key] <= whole[key] + len(broken) for key in whole)


def test_unique_counts_older_than_13_months_are_left_out_or_refused_with_breakdowns(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    old = ask(sandbox, api_settings, OLD, "campaign")
    assert old and all("reach" not in r and "frequency" not in r for r in old)
    assert all({"spend", "impressions", "campaign_id"} <= set(r) for r in old)
    assert_unique_counts(ask(sandbox, api_settings, RECENT, "campaign", breakdowns="age,gender"))

    url = f"{api_settings.base_url}/{ACCOUNT}/insights"
    token = token_for(sandbox, ACCOUNT)
    refused = insights_params(token, *OLD, level="campaign", fields=REACH, breakdowns="country")
    for response in (requests.get(url, params=refused, timeout=30), requests.post(url, data=refused, timeout=30)):
        error = graph_error(response)
        assert error["code"] == 100
        assert (
            error["message"] == "(#100) Reach and frequency with breakdowns are only available for the last 13 months"
        )
    # breakdowns without unique counts reach back as far as everything else
    assert get_insights(
        api_settings.base_url, ACCOUNT, insights_params(token, *OLD, level="campaign", breakdowns="country")
    )

    for breakdowns in (None, "country"):
        ancient = insights_params(token, *ANCIENT, level="campaign", fields=REACH, breakdowns=breakdowns)
        assert graph_error(requests.get(url, params=ancient, timeout=30))["code"] == 3018
