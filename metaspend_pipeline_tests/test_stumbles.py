"""Small things a new user trips over: redaction of words, exit codes, expired tokens, demo.env."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from metaspend_pipeline.cli import cli
from metaspend_pipeline.demo import load_demo_env, use_demo_env
from metaspend_pipeline.redaction import MASK, redact, register_secret
from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import iso


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


# --- redaction hides secrets, not words ----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Invalid OAuth access token - Cannot parse access token",
        "Invalid OAuth access token signature.",
        "(#190) OAuthException: Error validating access token",
        "the bearer of bad news",
    ],
)
def test_meta_error_words_are_kept(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer EAAtest0123456789abcdef", "EAAtest0123456789abcdef"),
        ("Authorization: OAuth short", "short"),
        ("{'Authorization': 'Bearer EAAxyz'}", "EAAxyz"),
        ('{"Authorization": "OAuth EAAxyz"}', "EAAxyz"),
        ("retrying with Bearer EAAtest0123456789abcdef after 80000", "EAAtest0123456789abcdef"),
        ("OAuth EAAtest0123456789abcdef was refused", "EAAtest0123456789abcdef"),
        ("GET /v21.0/me?access_token=EAAabc&fields=id", "EAAabc"),
        ('{"access_token": "EAAabc"}', "EAAabc"),
        ("debug_token?input_token=EAAabc&access_token=1|sec", "EAAabc"),
    ],
)
def test_secrets_are_still_masked(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert MASK in out


def test_a_registered_secret_is_masked_inside_meta_s_words(fake_token: str) -> None:
    register_secret(fake_token)
    assert redact(f"Invalid OAuth access token {fake_token}") == f"Invalid OAuth access token {MASK}"


# --- the same exit code for an unknown organization -----------------------------------------------


def test_every_command_exits_2_for_an_unknown_organization(
    env: dict[str, str], sandbox_endpoint: str, fake_token: str
) -> None:
    assert run("accounts", "connect", "--org", "org-1", "--ad-account", "act_1", stdin=fake_token).exit_code == 0
    for args in (
        ("accounts", "list", "--org", "org-unknown"),
        ("accounts", "list", "--org", "org-unknown", "--format", "json"),
        ("accounts", "disconnect", "--org", "org-unknown"),
        ("roas", "--org", "org-unknown", "--from", iso(1), "--to", iso(2)),
    ):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "organization org-unknown" in result.output
        assert len(result.output.strip().splitlines()) == 1
    listed = run("accounts", "list", "--org", "org-1")
    assert listed.exit_code == 0
    assert "act_1" in listed.output


# --- an expired token says when -------------------------------------------------------------------


@pytest.fixture
def app_sandbox(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Sandbox:
    """A sandbox of its own with an app (debug_token needs one), its URL and app in the environment."""
    server = SandboxServer(Sandbox(3)).start()
    monkeypatch.setenv("METASPEND_ENV", "development")
    monkeypatch.setenv("META_GRAPH_API_URL", server.url)
    monkeypatch.setenv("META_APP_ID", server.sandbox.config.app_id)
    monkeypatch.setenv("META_APP_SECRET", server.sandbox.config.app_secret)
    yield server.sandbox
    server.stop()


def test_an_expired_token_says_expired_on_date(app_sandbox: Sandbox, fake_token: str) -> None:
    organization = app_sandbox.world.organizations[0].organization_id
    app_sandbox.add_token(fake_token, organization, expires_in=-3 * 86400)
    expected = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).date()
    result = run("accounts", "connect", "--org", organization, stdin=fake_token)
    assert result.exit_code == 2
    assert f"expired on {expected:%Y-%m-%d}" in result.output
    assert f"organization {organization}" in result.output
    assert fake_token not in result.output
    assert run("accounts", "list", "--format", "json").output.strip() == "[]"


def test_a_revoked_token_is_still_reported_as_not_valid(app_sandbox: Sandbox, fake_token: str) -> None:
    organization = app_sandbox.world.organizations[0].organization_id
    app_sandbox.add_token(fake_token, organization, expires_in=86400, revoked=True)
    result = run("accounts", "connect", "--org", organization, stdin=fake_token)
    assert result.exit_code == 2
    assert "is not valid" in result.output
    assert "expired" not in result.output


# --- demo.env activates the venv -----------------------------------------------------------------


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="the tests run outside a virtual environment")
def test_sourcing_demo_env_puts_the_project_commands_on_path(tmp_path: Path) -> None:
    values = load_demo_env(tmp_path / ".metaspend")
    shell = subprocess.run(
        ["bash", "-c", f". '{tmp_path / '.metaspend' / 'demo.env'}' && command -v metaspend && echo $DAGSTER_HOME"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert shell.returncode == 0, shell.stderr
    command, home = shell.stdout.split()
    assert Path(command) == Path(sys.prefix) / "bin" / "metaspend"
    assert home == values["DAGSTER_HOME"]
    assert load_demo_env(tmp_path / ".metaspend") == values


def test_the_demo_keeps_meta_api_version_from_the_shell_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`META_API_VERSION=v24.0 metaspend demo` tries the demo with that version; the shell's other
    settings (another installation's key, warehouse, Meta endpoint) are not read."""
    monkeypatch.setattr(os, "environ", os.environ.copy())  # the demo rewrites its process's environment
    monkeypatch.setenv("META_API_VERSION", "v24.0")
    monkeypatch.setenv("META_APP_SECRET", "another-installation-secret")
    monkeypatch.setenv("METASPEND_DATABASE_URL", "postgresql://prod/warehouse")
    values = load_demo_env(tmp_path / ".metaspend")
    use_demo_env(values)
    assert os.environ["META_API_VERSION"] == "v24.0"
    assert "META_APP_SECRET" not in os.environ
    assert os.environ["METASPEND_DATABASE_URL"] == values["METASPEND_DATABASE_URL"] != "postgresql://prod/warehouse"
    assert "META_API_VERSION" not in values  # demo.env does not keep it: the next demo runs on the default


# --- roas over days that were never loaded --------------------------------------------------------


def test_roas_warns_about_days_never_loaded_and_refuses_a_range_with_none(pipeline: Pipeline) -> None:
    assert pipeline.run(iso(2), iso(3)).success
    loaded = run("roas", "--org", "demo-org-1", "--from", iso(2), "--to", iso(3))
    assert loaded.exit_code == 0
    assert loaded.stderr == ""

    wider = run("roas", "--org", "demo-org-1", "--from", iso(1), "--to", iso(5))
    assert wider.exit_code == 0
    assert wider.stderr == (
        "metaspend: warning: 3 of 5 day(s) were never loaded for organization demo-org-1: "
        f"{iso(1)}, {iso(4)}..{iso(5)}; their ROAS is missing, not 0; load them with "
        f"`metaspend backfill --from {iso(1)} --to {iso(5)} --org demo-org-1`\n"
    )
    assert json.loads(wider.stdout) == json.loads(loaded.stdout) != []

    nothing = run("roas", "--org", "demo-org-1", "--from", iso(-29), "--to", iso(0))
    assert nothing.exit_code == 2
    assert nothing.stdout == ""
    assert f"nothing was loaded for organization demo-org-1 from {iso(-29)} to {iso(0)}" in nothing.stderr


def test_a_loaded_day_without_spend_is_a_real_empty_report(pipeline: Pipeline) -> None:
    day = dt.date(2025, 1, 1)
    with pipeline.engine.begin() as conn:
        raw_store.log_fetch(conn, "run-1", raw_store.FetchOutcome("demo-org-3", "act_3000000001", day, day, "OK"))
    result = run("roas", "--org", "demo-org-3", "--from", "2025-01-01", "--to", "2025-01-01")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "[]\n", "")
    failed_only = dt.date(2025, 1, 2)
    with pipeline.engine.begin() as conn:
        raw_store.log_fetch(
            conn, "run-2", raw_store.FetchOutcome("demo-org-3", "act_3000000001", failed_only, failed_only, "FAILED")
        )
    result = run("roas", "--org", "demo-org-3", "--from", "2025-01-02", "--to", "2025-01-02")
    assert result.exit_code == 2


def test_meta_s_invalid_token_message_reaches_the_user_unredacted(
    env: dict[str, str], sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch, fake_token: str
) -> None:
    monkeypatch.setenv("METASPEND_ENV", "development")
    monkeypatch.setenv("META_GRAPH_API_URL", sandbox_server.url)
    result = run("accounts", "connect", "--org", "org-1", stdin=fake_token)
    assert result.exit_code == 2
    assert "Invalid OAuth access token - Cannot parse access token" in result.output
    assert MASK not in result.output
    assert fake_token not in result.output


def test_days_not_over_yet_are_not_offered_to_backfill(pipeline: Pipeline) -> None:
    today = dt.datetime.now(dt.UTC).date()
    result = run("roas", "--org", "demo-org-1", "--from", str(today), "--to", str(today + dt.timedelta(days=1)))
    assert result.exit_code == 2
    assert "they are not over yet" in result.stderr
    assert "metaspend backfill" not in result.stderr
