"""META_SPEND_SHARDS: disjoint, stable shards of organizations, and runs that touch only their own."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys

import dagster as dg
import pytest
import sqlalchemy as sa

from metaspend_pipeline.definitions import load
from metaspend_pipeline.defs.meta_spend.schedules import build_spend_schedule
from metaspend_pipeline.defs.roas.assets import ROAS_KEYS
from metaspend_pipeline.errors import InvalidInputError
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.shards import SHARD_TAG, Shard, all_shards
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.storage.schema import meta_roas_by_campaign
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import day as day_
from metaspend_pipeline_tests.defs.test_assets import END, START, failure_text, sort_rows, spend_rows, truth_rows
from metaspend_pipeline_tests.defs.test_schedules import ranges, tick

ORGANIZATIONS = [f"org-{i:04d}" for i in range(300)] + ["demo-org-1", "demo-org-2", "demo-org-3", "ÄÖ-unicode"]


def owner(organization_id: str, count: int) -> int:
    """The documented rule, computed here on its own: sha256 of the id, as a number, mod N."""
    return int(hashlib.sha256(organization_id.encode()).hexdigest(), 16) % count


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_are_disjoint_and_cover_every_organization(count: int) -> None:
    shards = all_shards(count)
    owned = [shard.select(ORGANIZATIONS) for shard in shards]
    assert sorted(o for part in owned for o in part) == sorted(ORGANIZATIONS)  # each exactly once
    for shard, part in zip(shards, owned, strict=True):
        assert all(owner(o, count) == shard.index for o in part)
        if count > 1:
            assert part, f"shard {shard} owns none of {len(ORGANIZATIONS)} organizations"


def test_shards_are_the_same_in_every_process() -> None:
    """Python's own hash() of a string changes per process; the shards must not."""
    code = (
        f"from metaspend_pipeline.shards import shard_index;print([shard_index(o, 5) for o in {ORGANIZATIONS[:50]!r}])"
    )
    outputs = set()
    for seed in ("1", "2", "random"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.add(done.stdout)
    assert outputs == {f"{[owner(o, 5) for o in ORGANIZATIONS[:50]]}\n"}


def test_a_shard_is_written_i_slash_n() -> None:
    assert Shard.parse(" 2/4 ") == Shard(2, 4)
    assert str(Shard(2, 4)) == "2/4"
    for bad in ("4/4", "1", "a/2", "-1/2", "1/0"):
        with pytest.raises(InvalidInputError, match="is not of the form i/N"):
            Shard.parse(bad)


def test_a_sharded_tick_asks_for_every_run_once_per_shard() -> None:
    settings = Settings.from_env({"META_SPEND_SHARDS": "3"})
    requests = tick(build_spend_schedule(settings), dt.datetime(2026, 11, 25, 6, tzinfo=dt.UTC))
    unsharded = tick(build_spend_schedule(Settings.from_env({})), dt.datetime(2026, 11, 25, 6, tzinfo=dt.UTC))
    assert len(unsharded) == 2 and all(SHARD_TAG not in r.tags for r in unsharded)
    assert ranges(requests) == [r for r in ranges(unsharded) for _ in range(3)]
    assert [r.tags[SHARD_TAG] for r in requests] == ["0/3", "1/3", "2/3"] * 2
    assert len({r.run_key for r in requests}) == 6
    assert [r.tags["metaspend/purpose"] for r in requests] == ["daily"] * 3 + ["roas-lookback"] * 3


def test_the_shards_cover_every_connected_organization(pipeline: Pipeline) -> None:
    with pipeline.engine.connect() as conn:
        connected = store.connected_organizations(conn)
    assert sorted(connected) == ["demo-org-1", "demo-org-2", "demo-org-3"]
    parts = [shard.select(connected) for shard in all_shards(2)]
    assert sorted(parts[0] + parts[1]) == sorted(connected)
    assert not set(parts[0]) & set(parts[1])


def roas_leads(engine: sa.Engine, organization: str, campaign: str, day: dt.date) -> int:
    t = meta_roas_by_campaign
    query = sa.select(t.c.leads_count).where(
        t.c.organization_id == organization, t.c.campaign_id == campaign, t.c.date == day
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar_one_or_none() or 0


def roas_organizations(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(meta_roas_by_campaign.c.organization_id).distinct()).scalars())


def roas_run(pipeline: Pipeline, tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    """The schedule's ROAS-only run: the ROAS assets alone, with the run's tags."""
    from metaspend_pipeline.defs.meta_spend.assets import meta_raw_insights, meta_spend_daily
    from metaspend_pipeline.defs.product.assets import table_specs
    from metaspend_pipeline.defs.roas.assets import meta_roas

    return dg.materialize(
        [*table_specs(), meta_raw_insights, meta_spend_daily, meta_roas],
        selection=list(ROAS_KEYS.values()),
        tags=tags,
        resources=pipeline.resources,
        raise_on_error=False,
    )


def test_each_shards_run_writes_and_computes_roas_only_for_its_organizations(pipeline: Pipeline) -> None:
    """Two shards through `meta_spend_job`: the first by its run tag, the second by run config, as
    a backfill would; then the ROAS-only run of the schedule, per shard."""
    organizations = ["demo-org-1", "demo-org-2", "demo-org-3"]
    shard0 = [o for o in organizations if owner(o, 2) == 0]
    shard1 = [o for o in organizations if owner(o, 2) == 1]
    assert shard0 and shard1
    job = load().resolve_job_def("meta_spend_job")
    range_tags = {"dagster/asset_partition_range_start": START, "dagster/asset_partition_range_end": END}

    first = job.execute_in_process(tags={**range_tags, SHARD_TAG: "0/2"}, resources=pipeline.resources)
    assert first.success, failure_text(first)
    assert {r[0] for r in spend_rows(pipeline.engine)} == set(shard0)
    assert sort_rows(spend_rows(pipeline.engine)) == truth_rows(pipeline, shard0)
    assert roas_organizations(pipeline.engine) == set(shard0)
    accounts0 = {a for o in pipeline.sandbox.world.organizations if o.organization_id in shard0 for a in o.ad_accounts}
    asked = {r["path"].split("/")[2] for r in pipeline.sandbox.requests_log() if "/act_" in r["path"]}
    assert asked == accounts0

    config = {
        "ops": {op: {"config": {"shard": "1/2"}} for op in ("meta_raw_insights", "meta_spend_daily", "meta_roas")}
    }
    second = job.execute_in_process(tags=range_tags, run_config=config, resources=pipeline.resources)
    assert second.success, failure_text(second)
    assert sort_rows(spend_rows(pipeline.engine)) == truth_rows(pipeline)
    assert roas_organizations(pipeline.engine) == set(organizations)

    # a lead in each shard; the ROAS-only run of one shard counts only its own
    day = day_(3)
    campaigns = {}
    with pipeline.engine.begin() as conn:
        for organization in (shard0[0], shard1[0]):
            org = next(o for o in pipeline.sandbox.world.organizations if o.organization_id == organization)
            campaigns[organization] = pipeline.sandbox.world.accounts[org.ad_accounts[0]].campaigns[0].id
            conn.execute(
                sa.text("INSERT INTO lead (id, organization_id, created_at, campaign_id) VALUES (:id, :org, :at, :c)"),
                {
                    "id": f"lead-{organization}",
                    "org": organization,
                    "at": dt.datetime.combine(day, dt.time(18), dt.UTC),
                    "c": campaigns[organization],
                },
            )
    before = len(pipeline.sandbox.requests_log())
    roas_only = roas_run(pipeline, {**range_tags, SHARD_TAG: "1/2"})
    assert roas_only.success, failure_text(roas_only)
    assert len(pipeline.sandbox.requests_log()) == before  # Meta is not asked again
    assert roas_leads(pipeline.engine, shard1[0], campaigns[shard1[0]], day) == 1
    assert roas_leads(pipeline.engine, shard0[0], campaigns[shard0[0]], day) == 0
    assert roas_run(pipeline, {**range_tags, SHARD_TAG: "0/2"}).success
    assert roas_leads(pipeline.engine, shard0[0], campaigns[shard0[0]], day) == 1


def test_a_shard_tag_and_config_that_disagree_fail_the_run(pipeline: Pipeline) -> None:
    job = load().resolve_job_def("meta_spend_job")
    result = job.execute_in_process(
        tags={
            "dagster/asset_partition_range_start": START,
            "dagster/asset_partition_range_end": START,
            SHARD_TAG: "0/2",
        },
        run_config={"ops": {"meta_raw_insights": {"config": {"shard": "1/2"}}}},
        resources=pipeline.resources,
        raise_on_error=False,
    )
    assert not result.success
    assert f"the run tag {SHARD_TAG}=0/2 and the run config shard=1/2 differ" in failure_text(result)
    assert spend_rows(pipeline.engine) == []
    with pytest.raises(dg.DagsterInvalidConfigError):
        job.execute_in_process(run_config={"ops": {"meta_raw_insights": {"config": {"shard": 3}}}})
