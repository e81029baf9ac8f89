"""The client's token and ad account calls, field by field against the sandbox's own records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets

import pytest

from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.errors import MetaApiError, MetaDataError, MetaRetriesExhaustedError
from metaspend_pipeline.meta.models import AdAccount, TokenInfo
from metaspend_pipeline.redaction import redact
from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline_tests.conftest import SANDBOX_SEED
from metaspend_pipeline_tests.meta.test_client import token_of

NEEDS_APP = "META_APP_ID and META_APP_SECRET are needed to inspect or extend tokens"


def with_app(settings: MetaApiSettings, sandbox: Sandbox) -> MetaApiSettings:
    return dataclasses.replace(settings, app_id=sandbox.config.app_id, app_secret=sandbox.config.app_secret)


def test_debug_token_reports_every_field_the_sandbox_knows_of_the_token(api_settings: MetaApiSettings) -> None:
    """A sandbox whose clock the test sets, so that each time Meta reports is known to the second."""
    noon = dt.datetime.combine(dt.date.today(), dt.time(12), dt.UTC)
    sandbox = Sandbox(SANDBOX_SEED, clock=noon.timestamp)
    with SandboxServer(sandbox) as server:
        settings = with_app(dataclasses.replace(api_settings, graph_api_url=server.url), sandbox)
        token = token_of(sandbox)
        # the sandbox's user tokens: its app, data access for 90 days from now, the three ads scopes
        scopes = ("ads_read", "ads_management", "business_management")
        info = MetaClient(token, settings).debug_token()
        assert info == TokenInfo(
            is_valid=True,
            expires_at=None,  # Meta's 0: it never expires
            data_access_expires_at=noon + dt.timedelta(days=90),
            scopes=scopes,
            app_id=sandbox.config.app_id,
            type="USER",
            user_id=sandbox.tokens[token].user_id,
        )
        for expires_in, valid in ((3600, True), (-60, False)):
            other = f"EAAtest{secrets.token_hex(16)}"
            sandbox.add_token(other, "demo-org-2", expires_in=expires_in)
            assert MetaClient(other, settings).debug_token() == dataclasses.replace(
                info, is_valid=valid, expires_at=noon + dt.timedelta(seconds=expires_in)
            )
        unknown = MetaClient(f"EAAtest{secrets.token_hex(16)}", settings).debug_token()
        assert unknown == TokenInfo(False, None, None, (), None, None, None)


def test_exchange_token_in_full(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    """A long-lived token the sandbox issued, its type and expiry; asked with the app's id and secret
    only (the old token goes as `fb_exchange_token`, not as the request's own token)."""
    settings = with_app(api_settings, sandbox)
    before = dt.datetime.now(dt.UTC)
    extended = MetaClient(token_of(sandbox), settings).exchange_token()
    after = dt.datetime.now(dt.UTC)
    lifetime = dt.timedelta(seconds=sandbox.config.token_lifetime_seconds)
    assert extended.access_token in sandbox.tokens
    assert extended.token_type == "bearer"
    assert extended.expires_at is not None
    assert before + lifetime <= extended.expires_at <= after + lifetime  # an aware time in UTC
    # a secret from the moment it arrives, before any client is made with it
    assert redact(f"the new token is {extended.access_token}") == "the new token is [REDACTED]"
    (exchange,) = sandbox.requests_log()
    assert exchange["endpoint"] == "access_token"
    assert (exchange["token_in_header"], exchange["token_in_query"]) == (False, False)
    assert exchange["params"]["client_id"] == sandbox.config.app_id
    assert "appsecret_proof" not in exchange["params"]


def test_an_exchange_answer_without_a_token_is_an_error(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    sandbox.add_faults([{"kind": "corrupt_row", "match": "oauth/access_token", "field": "access_token"}])
    with pytest.raises(MetaApiError) as info:
        MetaClient(token_of(sandbox), with_app(api_settings, sandbox)).exchange_token()
    assert str(info.value) == "extending the token: Meta's answer has no access_token"


def test_token_calls_that_fail_say_what_they_were_doing(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    settings = dataclasses.replace(with_app(api_settings, sandbox), max_retries=1)
    for call, context in (
        (MetaClient.debug_token, "inspecting the token"),
        (MetaClient.exchange_token, "extending the token"),
    ):
        sandbox.reset()
        sandbox.add_faults([{"kind": "server_error", "times": 2}])
        with pytest.raises(MetaRetriesExhaustedError) as info:
            call(MetaClient(token_of(sandbox), settings))
        assert str(info.value).startswith(f"{context}: gave up after 2 attempts (META_MAX_RETRIES=1)")


@pytest.mark.parametrize("app", [{}, {"app_id": "1000000000000001"}, {"app_secret": "sandbox-app-secret"}])
def test_token_calls_need_both_the_app_id_and_its_secret(
    sandbox: Sandbox, api_settings: MetaApiSettings, app: dict[str, str]
) -> None:
    settings = dataclasses.replace(api_settings, **{"app_id": None, "app_secret": None, **app})
    client = MetaClient(token_of(sandbox), settings)
    for call in (client.debug_token, client.exchange_token):
        with pytest.raises(MetaApiError) as info:
            call()
        assert str(info.value) == NEEDS_APP
    assert sandbox.requests_log() == []  # refused before anything is sent


def test_a_graph_read_sent_with_another_method_is_refused(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    """As Meta does, the sandbox answers only GET on the nodes and edges it reads (insights take a
    POST too: a report run)."""
    import requests

    for path in ("debug_token", "oauth/access_token", "me/adaccounts", "act_1000000001", "act_1000000001/ads"):
        response = requests.post(f"{api_settings.base_url}/{path}", timeout=5)
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith("Unsupported post request.")


def test_the_ad_accounts_of_a_token_are_checked_as_one_ad_account_is(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    token = token_of(sandbox, "demo-org-3")
    first, second = (sandbox.world.accounts[a] for a in ("act_3000000001", "act_3000000002"))
    sandbox.add_faults([{"kind": "corrupt_row", "match": "adaccounts", "field": "timezone_offset_hours_utc"}])
    assert MetaClient(token, api_settings).ad_accounts() == [
        AdAccount(first.id, first.name, first.currency, first.timezone_name, None, 1),
        AdAccount(second.id, second.name, second.currency, second.timezone_name, second.timezone_offset_hours_utc, 1),
    ]
    for field, value, error, message in (
        (
            "account_id",
            None,
            MetaApiError,
            "listing the token's ad accounts: an ad account has no account_id of digits (None)",
        ),
        (
            "account_id",
            "act_3000000001",
            MetaApiError,
            "listing the token's ad accounts: an ad account has no account_id of digits ('act_3000000001')",
        ),
        ("currency", None, MetaDataError, "ad account act_3000000001: Meta returned no currency or time zone"),
        (
            "currency",
            "inr",
            MetaDataError,
            "ad account act_3000000001: field currency 'inr' is not a currency code (3 letters A-Z)",
        ),
    ):
        sandbox.reset()
        sandbox.add_faults([{"kind": "corrupt_row", "match": "adaccounts", "field": field, "value": value}])
        with pytest.raises(error) as info:
            MetaClient(token, api_settings).ad_accounts()
        assert str(info.value) == message
        assert info.value.ad_account_id == ("act_3000000001" if error is MetaDataError else None)


def test_the_app_token_is_a_secret_even_when_the_app_secret_is_too_short_to_be_one(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    """Secrets under 8 characters are not registered on their own; `app_id|app_secret` still is."""
    sandbox.configure(app_secret="s3cr3t")
    settings = dataclasses.replace(api_settings, app_id=sandbox.config.app_id, app_secret="s3cr3t")
    assert MetaClient(token_of(sandbox), settings).debug_token().is_valid
    assert redact(f"app token {sandbox.config.app_id}|s3cr3t") == "app token [REDACTED]"
