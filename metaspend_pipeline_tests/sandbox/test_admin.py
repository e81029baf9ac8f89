"""The sandbox's admin side: a reset keeps the startup settings; a non-loopback host is warned about;
requests another site's page could make (a text/plain POST, a foreign Host) are refused."""

from __future__ import annotations

import dataclasses
import socket

import pytest
import requests
from click.testing import CliRunner

from metaspend_pipeline.cli import cli
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.errors import MetaApiError
from metaspend_pipeline.sandbox.control import SandboxAdmin
from metaspend_pipeline.sandbox.server import Sandbox, SandboxConfig, SandboxServer
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline_tests.bad_inputs import ADMIN_HOSTS_ANSWERED, ADMIN_REQUESTS, AdminRequest
from metaspend_pipeline_tests.conftest import ascii_id

ACCOUNT = "act_1000000001"


def test_deleting_faults_returns_to_the_startup_settings_not_the_defaults() -> None:
    startup = SandboxConfig(
        app_secret="startup-secret-" + "9" * 16,
        require_appsecret_proof=True,
        latency_seconds=0.001,
        rate_limit_calls=500,
        rate_limit_window_seconds=60.0,
    )
    server = SandboxServer(Sandbox(3, dataclasses.replace(startup))).start()
    try:
        token = server.sandbox.world.organizations[0].token
        admin = f"{server.url}/__sandbox"
        requests.post(f"{admin}/config", json={"latency_seconds": 0.0, "rate_limit_calls": 5}, timeout=5)
        requests.post(f"{admin}/faults", json=[{"kind": "server_error", "times": 100}], timeout=5)
        assert requests.delete(f"{admin}/faults", timeout=5).status_code == 200

        config = requests.get(f"{admin}/config", timeout=5).json()
        expected = dataclasses.asdict(startup) | {"app_secret": "<secret>"}
        assert config == expected
        assert requests.get(f"{admin}/faults", timeout=5).json() == []
        # the startup app secret still signs, and a call without its proof is still refused
        signed = MetaApiSettings(graph_api_url=server.url, app_secret=startup.app_secret, max_retries=0)
        assert MetaClient(token, signed).ad_account(ACCOUNT).currency == "USD"
        unsigned = dataclasses.replace(signed, app_secret=None)
        with pytest.raises(MetaApiError, match="appsecret_proof"):
            MetaClient(token, unsigned).ad_account(ACCOUNT)
    finally:
        server.stop()


@pytest.mark.parametrize(("host", "warned"), [("192.0.2.1", True), ("example.invalid", True), ("127.0.0.1", False)])
def test_serving_beyond_loopback_warns_that_tokens_are_handed_out(host: str, warned: bool) -> None:
    """The warning comes before the bind, and every bind here fails: 192.0.2.1 (TEST-NET-1) is on no
    interface, example.invalid resolves nowhere, and the loopback port is already taken, so the
    test neither opens the sandbox to the network nor blocks serving it."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(cli, ["sandbox", "serve", "--host", host, "--port", port])
    assert result.exit_code != 0
    warning = "/__sandbox/organizations endpoint hands out the demo organizations' tokens"
    assert (warning in result.stderr) is warned
    if warned:
        assert f"metaspend: warning: the sandbox listens on {host}, reachable from other machines" in result.stderr


@pytest.mark.parametrize("case", ADMIN_REQUESTS, ids=lambda c: ascii_id(f"{c.method} {c.path} {c.headers}"))
def test_a_request_another_site_could_make_is_refused(sandbox_server: SandboxServer, case: AdminRequest) -> None:
    """Before: a text/plain POST from any Origin installed a fault (`get_json(force=True)`), and a
    request naming `Host: evil.example` (DNS rebinding) was answered with the demo tokens."""
    sandbox = sandbox_server.sandbox
    sandbox.reset()
    before = (requests.get(f"{sandbox_server.url}/__sandbox/config", timeout=5).json(), dict(sandbox.tokens))
    response = requests.request(
        case.method, sandbox_server.url + case.path, headers=case.headers, data=case.body, timeout=5
    )
    assert (response.status_code, response.json()) == (case.status, {"error": case.message})
    assert sandbox.requests_log() == []  # no Graph call went through
    assert requests.get(f"{sandbox_server.url}/__sandbox/faults", timeout=5).json() == []
    assert (requests.get(f"{sandbox_server.url}/__sandbox/config", timeout=5).json(), sandbox.tokens) == before
    for org in sandbox.world.organizations:
        assert org.token not in response.text


@pytest.mark.parametrize("host", ADMIN_HOSTS_ANSWERED)
def test_loopback_hosts_are_answered(sandbox_server: SandboxServer, host: str) -> None:
    port = sandbox_server.url.rsplit(":", 1)[1]
    url = f"{sandbox_server.url}/__sandbox/organizations"
    response = requests.get(url, headers={"Host": host.format(port=port)}, timeout=5)
    assert response.status_code == 200
    assert response.json() == sandbox_server.sandbox.organizations()


def test_the_admin_client_still_steers_the_sandbox(sandbox: Sandbox, sandbox_server: SandboxServer) -> None:
    """`SandboxAdmin` (the demo's, the CLI's, the benchmarks') sends JSON: its POSTs still work."""
    admin = SandboxAdmin(sandbox_server.url)
    admin.add_faults({"kind": "server_error", "match": "insights", "times": 2})
    admin.configure(latency_seconds=0.0)
    admin.add_token("EAAadmin" + "1" * 30, "demo-org-1")
    admin.rename(sandbox.world.accounts[ACCOUNT].campaigns[0].id, "renamed by the admin client")
    assert [f["kind"] for f in requests.get(f"{sandbox_server.url}/__sandbox/faults", timeout=5).json()] == [
        "server_error"
    ]
    assert "EAAadmin" + "1" * 30 in sandbox.tokens
    assert sandbox.objects(ACCOUNT, "campaign")[0]["name"] == "renamed by the admin client"


def test_a_sandbox_served_on_another_address_answers_requests_naming_it() -> None:
    sandbox = Sandbox(3)
    sandbox.serve_on("192.0.2.10")
    sandbox.serve_on("[::]")  # a wildcard adds nothing: only the loopback names and that address
    assert sandbox._host_allowed("192.0.2.10:8765") and sandbox._host_allowed("127.0.0.1:8765")
    assert not sandbox._host_allowed("[::]:8765") and not sandbox._host_allowed("198.51.100.1")
