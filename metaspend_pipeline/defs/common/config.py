"""What the assets share: ownership, the run configuration that limits a run, and the run's scope."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from metaspend_pipeline.defs.common.resources import MetaAdsResource
from metaspend_pipeline.errors import InvalidInputError, MetaspendError, UnknownOrganizationError
from metaspend_pipeline.shards import SHARD_TAG, Shard
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage.accounts import normalize_ad_account_id, validate_organization_id

GROUP = "meta_spend"
OWNERS = ["team:data-engineering"]
TAGS = {"domain": "marketing", "source": "meta"}
# metadata of a step's materialization naming the organizations it could not write
ORGANIZATIONS_FAILED = "organizations_failed"


class MetaSpendConfig(dg.Config):
    """Limits a run to some organizations or ad accounts; empty means every connected one.

    Set it on `meta_raw_insights`: the assets downstream of it in the same run process exactly
    what it fetched.
    """

    organizations: list[str] = Field(default_factory=list, description="Only these organizations.")
    ad_accounts: list[str] = Field(default_factory=list, description="Only these ad accounts (act_<digits>).")
    shard: str = Field(
        default="",
        description=f"Only the organizations of this shard, as i/N (e.g. 0/4); the run tag {SHARD_TAG} does the same.",
    )

    def organization_ids(self) -> list[str] | None:
        return [validate_organization_id(o) for o in self.organizations] or None

    def ad_account_ids(self) -> list[str] | None:
        return [normalize_ad_account_id(a) for a in self.ad_accounts] or None


def run_shard(context: dg.AssetExecutionContext, config: MetaSpendConfig) -> Shard | None:
    """The shard this run owns, from its tag `metaspend/shard` or its config `shard`; None: every organization."""
    tagged = context.run.tags.get(SHARD_TAG)
    try:
        shards = {Shard.parse(text) for text in (tagged, config.shard) if text}
    except InvalidInputError as exc:
        raise dg.Failure(description=str(exc)) from None
    if len(shards) > 1:
        raise dg.Failure(description=f"the run tag {SHARD_TAG}={tagged} and the run config shard={config.shard} differ")
    return next(iter(shards), None)


def fetched_in_run(conn: sa.Connection, run_id: str) -> dict[str, list[str]] | None:
    """Organizations -> ad accounts that `meta_raw_insights` fetched in this run; None if it did not run."""
    outcomes = raw_store.fetches_of_run(conn, run_id)
    if not outcomes:
        return None
    scope: dict[str, list[str]] = {}
    for outcome in outcomes:
        accounts = scope.setdefault(outcome.organization_id, [])
        if outcome.status == "OK" and outcome.ad_account_id and outcome.ad_account_id not in accounts:
            accounts.append(outcome.ad_account_id)
    return scope


def organizations_to_fetch(
    context: dg.AssetExecutionContext, config: MetaSpendConfig, meta: MetaAdsResource
) -> tuple[list[str], list[str] | None, Shard | None]:
    """The organizations a fetching step reads (its config's, else every connected one; only its
    shard's), and the ad accounts its config limits it to; an unknown organization is a Failure."""
    shard = run_shard(context, config)
    try:
        connected = meta.organizations()
        organizations = config.organization_ids() or connected
        unknown = sorted(set(organizations) - set(connected))
        if unknown:
            raise UnknownOrganizationError(
                f"organization {', '.join(unknown)} has no CONNECTED Meta account; see `metaspend accounts list`"
            )
    except MetaspendError as exc:
        raise dg.Failure(description=str(exc)) from None
    if shard is not None:
        organizations = shard.select(organizations)
    return organizations, config.ad_account_ids(), shard
