"""`meta_token_refresh_job` extends exactly the tokens that expire within 7 days."""

from __future__ import annotations

import dataclasses
import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from metaspend_pipeline.credentials import store_connection
from metaspend_pipeline.definitions import load
from metaspend_pipeline.defs.common.resources import MetaAdsResource
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.sandbox.server import Sandbox
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.tokens import KeyRing, generate_key
from metaspend_pipeline_tests.bad_inputs import TOKEN_ANSWERS, TokenAnswer
from metaspend_pipeline_tests.conftest import Pipeline, ascii_id

NOW = dt.datetime.now(dt.UTC)


def connect(pipeline: Pipeline, org: str, token: str, expires_in_days: float | None) -> str:
    expires_at = NOW + dt.timedelta(days=expires_in_days) if expires_in_days is not None else None
    pipeline.sandbox.add_token(token, "demo-org-1", expires_in=expires_in_days * 86400 if expires_in_days else None)
    with pipeline.engine.begin() as conn:
        return store_connection(conn, KeyRing.from_env(), org, "FACEBOOK", ["act_1000000001"], token, expires_at)


def run_refresh(pipeline: Pipeline, sandbox: Sandbox, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    base = pipeline.resources["meta"]
    meta = MetaAdsResource(
        warehouse=base.warehouse,
        token_encryption_key=dg.EnvVar("META_TOKEN_ENCRYPTION_KEY"),
        app_id=sandbox.config.app_id,
        app_secret=sandbox.config.app_secret,
        retry_base_delay_seconds=0.001,
    )
    return (
        load()
        .resolve_job_def("meta_token_refresh_job")
        .execute_in_process(resources={"meta": meta}, instance=instance, raise_on_error=False)
    )


def test_refresh_extends_exactly_the_expiring_tokens(pipeline: Pipeline, sandbox: Sandbox) -> None:
    with pipeline.engine.begin() as conn:  # the sandbox's own organizations: tokens without expiry
        for org in ("demo-org-1", "demo-org-2", "demo-org-3"):
            store.disconnect_organization(conn, org)
    soon = connect(pipeline, "soon", "EAAsoon" + "1" * 30, 3)
    later = connect(pipeline, "later", "EAAlater" + "2" * 30, 30)
    never = connect(pipeline, "never", "EAAnever" + "3" * 30, None)
    rejected = connect(pipeline, "rejected", "EAArejected" + "4" * 30, 2)
    sandbox.add_token("EAArejected" + "4" * 30, "demo-org-1", revoked=True)
    with pipeline.engine.connect() as conn:
        before = {t.connected_account_id: t for t in store.stored_tokens(conn)}

    with dg.instance_for_test() as instance:
        result = run_refresh(pipeline, sandbox, instance)
        records = instance.all_logs(result.run_id)
        run = instance.get_run_by_id(result.run_id)
    assert not result.success  # a rejected token fails the run, after the others were handled
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "organization rejected (FACEBOOK" in failure.event_specific_data.error.to_string()

    with pipeline.engine.connect() as conn:
        after = {t.connected_account_id: t for t in store.stored_tokens(conn)}
        statuses = dict(conn.execute(sa.select(store.connected_account.c.id, store.connected_account.c.status)).all())
    keys = KeyRing.from_env()
    extended = after[soon]
    assert extended.access_token_encrypted != before[soon].access_token_encrypted
    assert extended.expires_at > NOW + dt.timedelta(days=59)
    assert extended.last_refreshed_at is not None
    new_token = keys.decrypt(extended.access_token_encrypted, soon)
    assert new_token != "EAAsoon" + "1" * 30
    api = MetaApiSettings(graph_api_url=pipeline.sandbox_url)
    assert MetaClient(new_token, api).ad_account("act_1000000001").currency == "USD"  # Meta accepts it
    for untouched in (later, never):
        assert after[untouched] == before[untouched]
    assert after[rejected].access_token_encrypted == before[rejected].access_token_encrypted
    assert statuses[rejected] == "NEEDS_REAUTH"
    assert statuses[soon] == statuses[later] == statuses[never] == "CONNECTED"

    text = "\n".join(r.user_message or "" for r in records) + repr(run.run_config)
    for token in ("EAAsoon" + "1" * 30, new_token, "EAArejected" + "4" * 30, sandbox.config.app_secret):
        assert token not in text
    assert "extended, new token valid until" in text
    assert "skipped, token never expires" in text


def test_refresh_without_app_credentials_says_what_is_missing(pipeline: Pipeline) -> None:
    connect(pipeline, "soon", "EAAsoon" + "5" * 30, 1)
    result = (
        load()
        .resolve_job_def("meta_token_refresh_job")
        .execute_in_process(resources={"meta": pipeline.resources["meta"]}, raise_on_error=False)
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "META_APP_ID and META_APP_SECRET are needed" in failure.event_specific_data.error.to_string()


def test_refresh_horizon_is_exactly_seven_days_and_only_connected_accounts_are_refreshed(
    engine: sa.Engine, encryption_key: str, sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    """A token expiring at now + 7 days exactly is extended, one a second later is not; tokens of
    accounts that are NEEDS_REAUTH or DISCONNECTED are never sent to Meta, however soon they expire."""
    from metaspend_pipeline.settings import Settings
    from metaspend_pipeline.token_refresh import EXTENDED, SKIPPED, refresh_tokens

    keyring = KeyRing.from_settings(Settings.from_env({"META_TOKEN_ENCRYPTION_KEY": encryption_key}))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    expiries = {
        "inside": dt.timedelta(days=6, hours=23, minutes=59, seconds=59),
        "exactly": dt.timedelta(days=7),
        "outside": dt.timedelta(days=7, seconds=1),
        "reauth": dt.timedelta(days=1),
        "disconnected": dt.timedelta(days=1),
    }
    ids = {}
    for org, left in expiries.items():
        token = f"EAA{org}" + "7" * 30
        sandbox.add_token(token, "demo-org-1", expires_in=left.total_seconds())
        with engine.begin() as conn:
            ids[org] = store_connection(conn, keyring, org, "FACEBOOK", ["act_1000000001"], token, now + left)
    with engine.begin() as conn:
        store.set_status(conn, ids["reauth"], "NEEDS_REAUTH")
        store.set_status(conn, ids["disconnected"], "DISCONNECTED")
    settings = dataclasses.replace(api_settings, app_id=sandbox.config.app_id, app_secret=sandbox.config.app_secret)

    outcomes = refresh_tokens(engine, keyring, lambda token: MetaClient(token, settings), now)
    assert Settings.from_env({}).token_refresh_within_days == 7  # what the job passes unless told otherwise

    assert {o.organization_id: o.status for o in outcomes} == {
        "inside": EXTENDED,
        "exactly": EXTENDED,
        "outside": SKIPPED,
        "reauth": SKIPPED,
        "disconnected": SKIPPED,
    }
    details = {o.organization_id: o.detail for o in outcomes}
    horizon = now + dt.timedelta(days=7)
    assert (
        details["outside"]
        == f"expires {horizon + dt.timedelta(seconds=1):%Y-%m-%d %H:%M} UTC, after {horizon:%Y-%m-%d}"
    )
    assert (details["reauth"], details["disconnected"]) == ("account is NEEDS_REAUTH", "account is DISCONNECTED")
    exchanges = [r for r in sandbox.requests_log() if r["endpoint"] == "access_token"]
    assert len(exchanges) == 2
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(store.connected_account.c.id, store.connected_account.c.status)).all())
    assert statuses[ids["reauth"]] == "NEEDS_REAUTH"
    assert statuses[ids["disconnected"]] == "DISCONNECTED"


def test_refresh_tokens_extends_up_to_exactly_seven_days_and_only_connected_accounts(
    engine: sa.Engine, encryption_key: str, sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    """`refresh_tokens` on its own, at a fixed `now`: the horizon is now + 7 days, inclusive, and
    each stored token gets one outcome saying what happened to it."""
    import dataclasses

    from metaspend_pipeline.settings import Settings
    from metaspend_pipeline.storage.db import utcnow
    from metaspend_pipeline.token_refresh import refresh_tokens

    now = utcnow().replace(microsecond=0)
    horizon = now + dt.timedelta(days=7)
    keyring = KeyRing.from_settings(Settings.from_env({"META_TOKEN_ENCRYPTION_KEY": encryption_key}))
    other_keyring = KeyRing.from_settings(Settings.from_env({"META_TOKEN_ENCRYPTION_KEY": generate_key()}))

    def connect(org: str, token: str, expires_at: dt.datetime | None, keys: KeyRing = keyring) -> str:
        sandbox.add_token(token, "demo-org-1")
        with engine.begin() as conn:
            return store_connection(conn, keys, org, "FACEBOOK", ["act_1000000001"], token, expires_at)

    at_horizon = connect("at-horizon", "EAAathorizon" + "1" * 30, horizon)
    after_horizon = connect("after-horizon", "EAAafter" + "2" * 30, horizon + dt.timedelta(seconds=1))
    never = connect("never", "EAAnever" + "3" * 30, None)
    reauth = connect("reauth", "EAAreauth" + "4" * 30, now + dt.timedelta(days=1))
    rejected = connect("rejected", "EAArejected" + "5" * 30, now + dt.timedelta(days=2))
    sandbox.add_token("EAArejected" + "5" * 30, "demo-org-1", revoked=True)
    foreign_key = connect("foreign-key", "EAAforeign" + "6" * 30, now + dt.timedelta(days=3), other_keyring)
    with engine.begin() as conn:
        store.set_status(conn, reauth, "NEEDS_REAUTH")
        before = {t.connected_account_id: t for t in store.stored_tokens(conn)}

    settings = dataclasses.replace(api_settings, app_id=sandbox.config.app_id, app_secret=sandbox.config.app_secret)
    outcomes = {
        o.connected_account_id: o for o in refresh_tokens(engine, keyring, lambda t: MetaClient(t, settings), now)
    }

    with engine.connect() as conn:
        after = {t.connected_account_id: t for t in store.stored_tokens(conn)}
        statuses = dict(conn.execute(sa.select(store.connected_account.c.id, store.connected_account.c.status)).all())
    new_expiry = now + dt.timedelta(seconds=sandbox.config.token_lifetime_seconds)
    assert {k: (o.organization_id, o.provider, o.status, o.detail, o.expires_at) for k, o in outcomes.items()} == {
        at_horizon: (
            "at-horizon",
            "FACEBOOK",
            "EXTENDED",
            f"new token valid until {new_expiry:%Y-%m-%d %H:%M} UTC",
            new_expiry,
        ),
        after_horizon: (
            "after-horizon",
            "FACEBOOK",
            "SKIPPED",
            f"expires {horizon + dt.timedelta(seconds=1):%Y-%m-%d %H:%M} UTC, after {horizon:%Y-%m-%d}",
            horizon + dt.timedelta(seconds=1),
        ),
        never: ("never", "FACEBOOK", "SKIPPED", "token never expires", None),
        reauth: ("reauth", "FACEBOOK", "SKIPPED", "account is NEEDS_REAUTH", now + dt.timedelta(days=1)),
        rejected: ("rejected", "FACEBOOK", "NEEDS_REAUTH", outcomes[rejected].detail, now + dt.timedelta(days=2)),
        foreign_key: ("foreign-key", "FACEBOOK", "FAILED", outcomes[foreign_key].detail, now + dt.timedelta(days=3)),
    }
    assert outcomes[rejected].detail.startswith("Meta rejected the token (")
    assert outcomes[rejected].detail.endswith("); reconnect the account")
    assert "code 190/467: Invalid OAuth access token" in outcomes[rejected].detail  # Meta's own words
    assert "EAArejected" not in outcomes[rejected].detail
    assert outcomes[foreign_key].detail.startswith(f"token of connected account {foreign_key} was encrypted with key ")
    assert str(outcomes[never]) == f"organization never (FACEBOOK, account {never}): skipped, token never expires"
    assert str(outcomes[rejected]).startswith(f"organization rejected (FACEBOOK, account {rejected}): needs reauth, ")

    extended = after[at_horizon]
    assert (extended.expires_at, extended.last_refreshed_at is not None) == (new_expiry, True)
    new_token = keyring.decrypt(extended.access_token_encrypted, at_horizon)
    assert new_token != "EAAathorizon" + "1" * 30
    assert MetaClient(new_token, api_settings).ad_account("act_1000000001").currency == "USD"  # Meta accepts it
    for untouched in (after_horizon, never, reauth, rejected, foreign_key):
        assert dataclasses.replace(after[untouched], status="") == dataclasses.replace(before[untouched], status="")
    assert statuses == {
        at_horizon: "CONNECTED",
        after_horizon: "CONNECTED",
        never: "CONNECTED",
        reauth: "NEEDS_REAUTH",
        rejected: "NEEDS_REAUTH",
        foreign_key: "CONNECTED",
    }


def test_a_token_meta_extends_without_expiry_is_said_to_have_none(
    engine: sa.Engine, encryption_key: str, sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    import dataclasses

    from metaspend_pipeline.settings import Settings
    from metaspend_pipeline.storage.db import utcnow
    from metaspend_pipeline.token_refresh import refresh_tokens

    sandbox.configure(token_lifetime_seconds=0)  # Meta's answer has no expires_in
    keyring = KeyRing.from_settings(Settings.from_env({"META_TOKEN_ENCRYPTION_KEY": encryption_key}))
    now = utcnow()
    sandbox.add_token("EAAsoon" + "7" * 30, "demo-org-1")
    with engine.begin() as conn:
        account = store_connection(
            conn, keyring, "soon", "FACEBOOK", ["act_1000000001"], "EAAsoon" + "7" * 30, now + dt.timedelta(days=1)
        )
    settings = dataclasses.replace(api_settings, app_id=sandbox.config.app_id, app_secret=sandbox.config.app_secret)
    [outcome] = refresh_tokens(engine, keyring, lambda t: MetaClient(t, settings), now, within_days=1)
    assert (outcome.connected_account_id, outcome.status, outcome.detail, outcome.expires_at) == (
        account,
        "EXTENDED",
        "new token valid until no expiry",
        None,
    )
    with engine.connect() as conn:
        [stored] = store.stored_tokens(conn)
    assert stored.expires_at is None


@pytest.mark.parametrize("case", TOKEN_ANSWERS, ids=lambda c: ascii_id(f"{c.field}={c.value!r}"))
def test_a_bad_exchange_answer_fails_that_organization_only_and_keeps_its_token(
    engine: sa.Engine, encryption_key: str, sandbox: Sandbox, api_settings: MetaApiSettings, case: TokenAnswer
) -> None:
    """The first organization's exchange gets the bad answer: it fails naming the field, keeps its
    token and expiry, and the second is still extended."""
    from metaspend_pipeline.settings import Settings
    from metaspend_pipeline.storage.db import utcnow
    from metaspend_pipeline.token_refresh import EXTENDED, FAILED, refresh_tokens

    keyring = KeyRing.from_settings(Settings.from_env({"META_TOKEN_ENCRYPTION_KEY": encryption_key}))
    now = utcnow().replace(microsecond=0)
    tokens = {org: f"EAA{org}" + "8" * 30 for org in ("first", "second")}
    for org, token in tokens.items():
        sandbox.add_token(token, "demo-org-1")
        with engine.begin() as conn:
            store_connection(conn, keyring, org, "FACEBOOK", ["act_1000000001"], token, now + dt.timedelta(days=1))
    with engine.connect() as conn:
        before = {t.organization_id: t for t in store.stored_tokens(conn)}
    sandbox.add_faults(
        [{"kind": "corrupt_row", "match": "oauth/access_token", "field": case.field, "value": case.value}]
    )
    settings = dataclasses.replace(api_settings, app_id=sandbox.config.app_id, app_secret=sandbox.config.app_secret)

    outcomes = {o.organization_id: o for o in refresh_tokens(engine, keyring, lambda t: MetaClient(t, settings), now)}

    with engine.connect() as conn:
        after = {t.organization_id: t for t in store.stored_tokens(conn)}
    [failed] = [org for org, o in outcomes.items() if o.status == FAILED]
    [extended] = [org for org, o in outcomes.items() if o.status == EXTENDED]
    assert outcomes[failed].detail == case.message
    assert outcomes[failed].expires_at == before[failed].expires_at
    assert after[failed] == before[failed]  # the same encrypted token, expiry and status
    assert after[extended].expires_at == now + dt.timedelta(seconds=sandbox.config.token_lifetime_seconds)
    assert (
        keyring.decrypt(after[extended].access_token_encrypted, after[extended].connected_account_id)
        != tokens[extended]
    )
    for token in (*tokens.values(), "EAA new token", "EAAtoken"):
        assert token not in str(outcomes[failed])
