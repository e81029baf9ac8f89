"""The sandbox's insights broken down by age and gender, country and placement, as Meta's: each
object-day split exactly, at every level, with the values Meta answers; combinations Meta refuses
refused; paging, report runs and faults as for the unbroken rows."""

from __future__ import annotations

import re
from collections.abc import Iterable
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
    minor,
    object_key,
    read_pages,
    report_run,
    token_for,
)

ACCOUNTS = ("act_1000000001", "act_3000000002")  # USD, and JPY without minor units
SINCE, UNTIL = day(1), day(7)
SETS = {
    "age_gender": ("age", "gender"),
    "country": ("country",),
    "placement": ("publisher_platform", "platform_position", "device_platform"),
}
AGES = {"18-24", "25-34", "35-44", "45-54", "55-64", "65+", "Unknown"}
GENDERS = {"female", "male", "unknown"}
POSITIONS = {
    "facebook": {"feed", "facebook_stories", "facebook_reels", "marketplace", "right_hand_column", "search"},
    "instagram": {"stream", "instagram_stories", "instagram_reels", "instagram_explore"},
    "audience_network": {"an_classic", "rewarded_video"},
    "messenger": {"messenger_inbox", "messenger_stories"},
}
DEVICES = {"mobile_app", "mobile_web", "desktop"}
MOBILE_ONLY = {
    "facebook_stories",
    "facebook_reels",
    "instagram_stories",
    "instagram_reels",
    "instagram_explore",
    "an_classic",
    "rewarded_video",
    "messenger_stories",
}
HOME = {"act_1000000001": "US", "act_1000000002": "DE", "act_2000000001": "BR", "act_3000000001": "IN"}


def sums_by(
    rows: Iterable[dict[str, Any]], digits: int, fields: tuple[str, ...] = ()
) -> dict[tuple[Any, ...], list[int]]:
    """(spend in minor units, impressions, clicks) per object-day and the values of `fields`."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for row in rows:
        total = out.setdefault((*object_key(row), *(row[f] for f in fields)), [0, 0, 0])
        total[0] += minor(row["spend"], digits)
        total[1] += int(row["impressions"])
        total[2] += int(row["clicks"])
    return out


def as_truth(rows: Iterable[dict[str, Any]], fields: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Insights rows in the shape of the truth's, sorted: for comparing the two."""
    return sorted(
        (*object_key(r), *(r[f] for f in fields), r["spend"], int(r["impressions"]), int(r["clicks"])) for r in rows
    )


@pytest.mark.parametrize("account", ACCOUNTS)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("breakdown", SETS)
def test_breakdown_rows_add_up_to_each_object_day_exactly_and_are_the_truth(
    sandbox: Sandbox,
    sandbox_server: SandboxServer,
    api_settings: MetaApiSettings,
    breakdown: str,
    level: str,
    account: str,
) -> None:
    token = token_for(sandbox, account)
    digits = sandbox.world.accounts[account].minor_digits
    fields = SETS[breakdown]
    unbroken = get_insights(api_settings.base_url, account, insights_params(token, SINCE, UNTIL, level=level))
    broken = get_insights(
        api_settings.base_url,
        account,
        insights_params(token, SINCE, UNTIL, level=level, breakdowns=",".join(fields)),
    )

    assert len(broken) > len(unbroken) > 0
    for row in broken:
        assert minor(row["spend"], digits) > 0 or int(row["impressions"]) > 0  # no zero rows
        assert 0 <= int(row["clicks"]) <= int(row["impressions"])
        assert all(isinstance(row[f], str) for f in fields)
    assert sums_by(broken, digits) == sums_by(unbroken, digits)
    # one row per object-day and breakdown value
    assert len(sums_by(broken, digits, fields)) == len(broken)

    truth = SandboxAdmin(sandbox_server.url).breakdown_truth(
        account, level, SINCE.isoformat(), UNTIL.isoformat(), breakdown
    )
    expected = sorted(
        (
            r["date"],
            r["campaign_id"],
            r["adset_id"],
            r["ad_id"],
            *(r[f] for f in fields),
            r["spend"],
            r["impressions"],
            r["clicks"],
        )
        for r in truth
    )
    assert as_truth(broken, fields) == expected
    assert {r["currency"] for r in truth} == {sandbox.world.accounts[account].currency}


@pytest.mark.parametrize("account", ["act_1000000001", "act_1000000002", "act_2000000001", "act_3000000001"])
def test_breakdown_values_are_those_meta_answers(sandbox: Sandbox, api_settings: MetaApiSettings, account: str) -> None:
    token = token_for(sandbox, account)
    by_set = {
        name: get_insights(
            api_settings.base_url,
            account,
            insights_params(token, SINCE, UNTIL, level="ad", breakdowns=",".join(fields)),
        )
        for name, fields in SETS.items()
    }
    assert {r["age"] for r in by_set["age_gender"]} <= AGES
    assert {r["gender"] for r in by_set["age_gender"]} == GENDERS
    countries = {r["country"] for r in by_set["country"]}
    assert all(re.fullmatch("[A-Z]{2}", c) or c == "unknown" for c in countries)
    assert 3 <= len(countries) <= 10
    impressions: dict[str, int] = {}
    for r in by_set["country"]:
        impressions[r["country"]] = impressions.get(r["country"], 0) + int(r["impressions"])
    assert max(impressions, key=impressions.__getitem__) == HOME[account]  # the home country most
    for r in by_set["placement"]:
        assert r["platform_position"] in POSITIONS[r["publisher_platform"]], r
        assert r["device_platform"] in DEVICES
        assert not (r["device_platform"] == "desktop" and r["platform_position"] in MOBILE_ONLY), r
    assert {r["publisher_platform"] for r in by_set["placement"]} == set(POSITIONS)


@pytest.mark.parametrize(
    ("asked", "fields"),
    [
        ("age", ("age",)),
        ("gender", ("gender",)),
        ("gender,age", ("age", "gender")),
        ('["country"]', ("country",)),  # a JSON list, as Meta's SDKs send it
        ("publisher_platform", ("publisher_platform",)),
        ("publisher_platform,platform_position", ("publisher_platform", "platform_position")),
        ("device_platform", ("device_platform",)),
    ],
)
def test_smaller_combinations_are_sums_of_the_whole_set(
    sandbox: Sandbox, api_settings: MetaApiSettings, asked: str, fields: tuple[str, ...]
) -> None:
    account = "act_1000000001"
    token = token_for(sandbox, account)
    whole = next(s for s in SETS.values() if set(fields) <= set(s))
    part = get_insights(
        api_settings.base_url, account, insights_params(token, SINCE, UNTIL, level="adset", breakdowns=asked)
    )
    full = get_insights(
        api_settings.base_url, account, insights_params(token, SINCE, UNTIL, level="adset", breakdowns=",".join(whole))
    )
    assert all(set(r) >= set(fields) and not set(r) & (set(whole) - set(fields)) for r in part)
    assert sums_by(part, 2, fields) == sums_by(full, 2, fields)


@pytest.mark.parametrize("breakdown", SETS)
def test_all_days_rows_are_the_sums_of_the_daily_rows(
    sandbox: Sandbox, api_settings: MetaApiSettings, breakdown: str
) -> None:
    account = "act_1000000002"
    token = token_for(sandbox, account)
    fields = SETS[breakdown]

    def ask(daily: bool, breakdowns: str | None) -> list[dict[str, Any]]:
        params = insights_params(token, SINCE, UNTIL, level="campaign", breakdowns=breakdowns, daily=daily)
        return get_insights(api_settings.base_url, account, params)

    daily = ask(True, ",".join(fields))
    over_range = ask(False, ",".join(fields))
    assert {(r["date_start"], r["date_stop"]) for r in over_range} == {(SINCE.isoformat(), UNTIL.isoformat())}
    by_value: dict[tuple[Any, ...], list[int]] = {}
    for key, value in sums_by(daily, 2, fields).items():
        total = by_value.setdefault(key[1:], [0, 0, 0])
        for i in range(3):
            total[i] += value[i]
    assert {key[1:]: value for key, value in sums_by(over_range, 2, fields).items()} == by_value
    assert sums_by(over_range, 2) == sums_by(ask(False, None), 2)


def test_without_a_status_filter_breakdowns_leave_out_what_the_unbroken_rows_leave_out(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    account = "act_1000000001"
    token = token_for(sandbox, account)

    def ask(breakdowns: str | None, every_status: bool) -> list[dict[str, Any]]:
        params = insights_params(token, SINCE, UNTIL, level="ad", breakdowns=breakdowns, every_status=every_status)
        return get_insights(api_settings.base_url, account, params)

    visible = ask("age,gender", every_status=False)
    assert sums_by(visible, 2) == sums_by(ask(None, every_status=False), 2)
    assert len(visible) < len(ask("age,gender", every_status=True))  # archived and deleted ads hidden


def test_two_sandboxes_of_one_seed_break_down_alike_and_another_seed_differently(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    account = "act_1000000001"

    def rows(server_url: str, seeded: Sandbox) -> list[dict[str, Any]]:
        params = insights_params(token_for(seeded, account), SINCE, UNTIL, level="campaign", breakdowns="country")
        return get_insights(f"{server_url}/{api_settings.api_version}", account, params)

    ours = rows(api_settings.graph_api_url, sandbox)
    for seed, same in ((SANDBOX_SEED, True), (SANDBOX_SEED + 1, False)):
        with SandboxServer(Sandbox(seed)) as other:
            assert (rows(other.url, other.sandbox) == ours) is same


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        ("age,country", "(#100) Current combination of data breakdown columns (age, country) is invalid"),
        ("country,gender", "(#100) Current combination of data breakdown columns (country, gender) is invalid"),
        (
            "publisher_platform,device_platform",
            "(#100) Current combination of data breakdown columns (publisher_platform, device_platform) is invalid",
        ),
        ("platform_position", "(#100) Current combination of data breakdown columns (platform_position) is invalid"),
        ("age,age", "(#100) Current combination of data breakdown columns (age, age) is invalid"),
        ("region", "(#100) breakdowns[0] must be one of the following values: "),
        ("age,hourly_stats", "(#100) breakdowns[1] must be one of the following values: "),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_combinations_meta_cannot_break_down_by_are_refused(
    sandbox: Sandbox, api_settings: MetaApiSettings, asked: str, message: str, method: str
) -> None:
    account = "act_1000000001"
    params = insights_params(token_for(sandbox, account), SINCE, UNTIL, level="campaign", breakdowns=asked)
    url = f"{api_settings.base_url}/{account}/insights"
    response = (
        requests.get(url, params=params, timeout=30) if method == "GET" else requests.post(url, data=params, timeout=30)
    )
    error = graph_error(response)
    assert error["code"] == 100
    assert error["message"].startswith(message)


def test_paging_report_runs_and_faults_serve_breakdowns_as_they_serve_rows(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    sandbox.configure(async_job_seconds=0.01)
    account = "act_1000000001"
    token = token_for(sandbox, account)
    asked = "publisher_platform,platform_position,device_platform"
    url = f"{api_settings.base_url}/{account}/insights"
    whole, pages = read_pages(url, insights_params(token, SINCE, UNTIL, level="campaign", breakdowns=asked))
    assert pages == 1

    paged, pages = read_pages(url, insights_params(token, SINCE, UNTIL, level="campaign", breakdowns=asked, limit=40))
    assert pages == -(-len(whole) // 40) > 3
    assert paged == whole

    run_id = report_run(
        api_settings.base_url, account, insights_params(token, SINCE, UNTIL, level="campaign", breakdowns=asked)
    )
    from_run, pages = read_pages(f"{api_settings.base_url}/{run_id}/insights", {"access_token": token, "limit": "50"})
    assert pages > 3
    assert from_run == whole

    # a page that fails once answers the same rows when asked again
    sandbox.add_faults([{"kind": "server_error", "match": "insights", "skip": 1}])
    first = requests.get(
        url, params=insights_params(token, SINCE, UNTIL, level="campaign", breakdowns=asked, limit=40), timeout=30
    )
    second_url = first.json()["paging"]["next"]
    assert requests.get(second_url, timeout=30).status_code == 500
    rest, _ = read_pages(second_url, None)
    assert first.json()["data"] + rest == whole
