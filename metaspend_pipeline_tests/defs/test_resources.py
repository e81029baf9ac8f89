"""The `meta` resource inside Dagster, and `accounts connect` discovering ad accounts from Meta."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from metaspend_pipeline.cli import cli
from metaspend_pipeline.cli.sandbox import connect_sandbox_organizations
from metaspend_pipeline.credentials import NoValidTokenError
from metaspend_pipeline.defs.common.resources import MetaAdsResource, WarehouseResource
from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.schema import connected_account, oauth_token
from metaspend_pipeline.tokens import KeyRing
from metaspend_pipeline_tests.dates import day

DAY = day(5)


def meta_resource(db_url: str, sandbox_server: SandboxServer) -> MetaAdsResource:
    return MetaAdsResource(
        warehouse=WarehouseResource(database_url=db_url),
        token_encryption_key=dg.EnvVar("META_TOKEN_ENCRYPTION_KEY"),
        retry_base_delay_seconds=0.001,
        retry_max_wait_seconds=0.01,
    )


def test_resource_hands_each_ad_account_a_client_and_logs_without_tokens(
    env: dict[str, str], sandbox: Sandbox, sandbox_server: SandboxServer, sandbox_endpoint: str
) -> None:
    engine = db.engine_for(env["METASPEND_DATABASE_URL"])
    connect_sandbox_organizations(engine, KeyRing.from_env(), sandbox_server.url)
    sandbox.add_faults([{"kind": "server_error", "match": "insights"}])
    seen: list[tuple[str, str, int]] = []

    @dg.asset
    def probe(meta: MetaAdsResource) -> dg.MaterializeResult:
        for organization in meta.organizations():
            for account in meta.ad_accounts(organization):
                rows = list(account.client.insights(account.ad_account_id, "campaign", DAY, DAY))
                seen.append((organization, account.ad_account_id, len(rows)))
                meta.log_stats(account)
        return dg.MaterializeResult(metadata={"accounts": len(seen)})

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [probe], resources={"meta": meta_resource(env["METASPEND_DATABASE_URL"], sandbox_server)}, instance=instance
        )
        assert result.success
        records = instance.all_logs(result.run_id)
        run = instance.get_run_by_id(result.run_id)
    assert [(o, a) for o, a, _ in seen] == [
        (o.organization_id, a) for o in sandbox.world.organizations for a in o.ad_accounts
    ]
    assert all(n > 0 for _, _, n in seen)
    messages = "\n".join(r.user_message or "" for r in records)
    assert "ad account act_1000000001: 2 requests, 1 pages" in messages
    assert "1 retries" in messages
    dumped = messages + json.dumps(run.run_config) + repr(run.tags)
    for org in sandbox.world.organizations:
        assert org.token not in dumped


def test_expired_tokens_do_not_reach_the_client(
    env: dict[str, str], sandbox_server: SandboxServer, sandbox_endpoint: str
) -> None:
    engine = db.engine_for(env["METASPEND_DATABASE_URL"])
    connect_sandbox_organizations(engine, KeyRing.from_env(), sandbox_server.url)
    with engine.begin() as conn:
        conn.execute(oauth_token.update().values(expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))

    @dg.asset
    def probe(meta: MetaAdsResource) -> None:
        meta.ad_accounts("demo-org-1")

    with pytest.raises(NoValidTokenError, match="No valid access token found for organization demo-org-1"):
        dg.materialize([probe], resources={"meta": meta_resource(env["METASPEND_DATABASE_URL"], sandbox_server)})


def test_connect_discovers_ad_accounts_and_stores_the_expiry(
    env: dict[str, str], sandbox: Sandbox, sandbox_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "EAAdiscover" + "1" * 24
    sandbox.add_token(token, "demo-org-3", expires_in=3 * 86400)
    runner = CliRunner()
    result = runner.invoke(cli, ["accounts", "connect", "--org", "acme"], input=token, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "act_3000000001, act_3000000002" in result.output
    assert "token expires never" in result.output  # without app credentials, no debug_token

    monkeypatch.setenv("META_APP_ID", sandbox.config.app_id)
    monkeypatch.setenv("META_APP_SECRET", sandbox.config.app_secret)
    result = runner.invoke(cli, ["accounts", "connect", "--org", "acme"], input=token, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with db.engine_for(env["METASPEND_DATABASE_URL"]).connect() as conn:
        expires_at = conn.execute(
            sa.select(oauth_token.c.expires_at)
            .join(connected_account)
            .where(connected_account.c.organization_id == "acme")
        ).scalar_one()
    expected = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    assert abs(db_datetime(expires_at) - expected) < dt.timedelta(minutes=5)
    for output in (result.output, result.stderr):
        assert token not in output
        assert sandbox.config.app_secret not in output


def test_connect_refuses_a_token_meta_rejects(
    env: dict[str, str], sandbox: Sandbox, sandbox_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("META_APP_ID", sandbox.config.app_id)
    monkeypatch.setenv("META_APP_SECRET", sandbox.config.app_secret)
    result = CliRunner().invoke(cli, ["accounts", "connect", "--org", "acme"], input="EAAunknown" + "2" * 20)
    assert result.exit_code == 2
    assert "Meta says the token for organization acme is not valid" in result.stderr
    with db.engine_for(env["METASPEND_DATABASE_URL"]).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(connected_account)).scalar_one() == 0


def db_datetime(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
