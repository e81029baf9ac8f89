"""The sandbox's admin side: a reset keeps the startup settings; a non-loopback host is warned about."""

from __future__ import annotations

import dataclasses
import socket

import pytest
import requests
from click.testing import CliRunner

from metaspend_pipeline.cli import cli
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.errors import MetaApiError
from metaspend_pipeline.sandbox.server import Sandbox, SandboxConfig, SandboxServer
from metaspend_pipeline.settings import MetaApiSettings

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
