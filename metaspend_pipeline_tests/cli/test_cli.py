from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from metaspend_pipeline.cli import cli
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.schema import connected_account, oauth_token
from metaspend_pipeline.tokens import generate_key

METASPEND = Path(sys.executable).with_name("metaspend")


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, env=env, catch_exceptions=False)


def table_counts(url: str) -> tuple[int, int]:
    with db.engine_for(url).connect() as conn:
        return (
            conn.execute(sa.select(sa.func.count()).select_from(connected_account)).scalar_one(),
            conn.execute(sa.select(sa.func.count()).select_from(oauth_token)).scalar_one(),
        )


def test_connect_list_disconnect(env: dict[str, str], sandbox_endpoint: str, fake_token: str) -> None:
    result = run(
        "accounts",
        "connect",
        "--org",
        "org-1",
        "--ad-account",
        "act_1",
        "--ad-account",
        "2",
        "--expires-at",
        "2099-01-01T00:00:00Z",
        stdin=fake_token + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "ad accounts act_1, act_2" in result.output

    listed = run("accounts", "list", "--format", "json")
    [row] = json.loads(listed.output)
    assert (row["organizationId"], row["status"], row["adAccounts"]) == (
        "org-1",
        "CONNECTED",
        ["act_1", "act_2"],
    )
    assert row["tokenExpiresAt"].startswith("2099-01-01")
    assert "org-1" in run("accounts", "list").output

    result = run("accounts", "disconnect", "--org", "org-1")
    assert result.exit_code == 0
    assert table_counts(env["METASPEND_DATABASE_URL"]) == (1, 0)
    [row] = json.loads(run("accounts", "list", "--format", "json").output)
    assert (row["status"], row["hasToken"]) == ("DISCONNECTED", False)
    for output in (result.output, listed.output):
        assert fake_token not in output


def test_reconnecting_replaces_the_token(env: dict[str, str], sandbox_endpoint: str) -> None:
    run("accounts", "connect", "--org", "org-1", "--ad-account", "act_1", stdin="EAAfirst0000000")
    run("accounts", "connect", "--org", "org-1", "--ad-account", "act_3", stdin="EAAsecond000000")
    assert table_counts(env["METASPEND_DATABASE_URL"]) == (1, 1)
    [row] = json.loads(run("accounts", "list", "--format", "json").output)
    assert row["adAccounts"] == ["act_3"]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            ["accounts", "connect", "--org", "org-1", "--ad-account", "act_12x"],
            "EAAtok0000000",
            "ad account id 'act_12x' is malformed",
        ),
        (
            ["accounts", "connect", "--org", "org-1", "--ad-account", "act_1"],
            "  \n",
            "token read from standard input is empty",
        ),
        (
            ["accounts", "connect", "--org", "bad org", "--ad-account", "act_1"],
            "EAAtok0000000",
            "organization id 'bad org' is not valid",
        ),
        (
            ["accounts", "connect", "--org", "org-1", "--ad-account", "act_1", "--expires-at", "soon"],
            "EAAtok0000000",
            "--expires-at 'soon' is not an ISO 8601",
        ),
        (
            ["accounts", "connect", "--org", "org-1", "--ad-account", "act_1", "--expires-at", "2001-01-01"],
            "EAAtok0000000",
            "is in the past",
        ),
        (
            ["accounts", "disconnect", "--org", "org-404"],
            None,
            "no connected account found for organization org-404",
        ),
        (
            ["breakdown", "--org", "org-404", "--by", "country", "--from", "2026-11-01", "--to", "2026-11-02"],
            None,
            "organization org-404 has no connected account",
        ),
        (
            ["breakdown", "--org", "org-1", "--by", "age_gender", "--from", "2026-11-05", "--to", "2026-11-01"],
            None,
            "--from 2026-11-05 is after --to 2026-11-01",
        ),
        (
            ["reach", "--org", "org-1", "--period", "month", "--from", "2026-13-01"],
            None,
            "--from '2026-13-01' is not a date as YYYY-MM-DD",
        ),
        (
            ["reach", "--org", "org-404", "--period", "week"],
            None,
            "organization org-404 has no connected account",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    env: dict[str, str], args: list[str], stdin: str | None, message: str
) -> None:
    result = run(*args, stdin=stdin)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("metaspend: error: ")
    assert message in result.stderr
    assert table_counts(env["METASPEND_DATABASE_URL"]) == (0, 0)


def test_a_key_that_is_not_32_bytes_is_refused(env: dict[str, str]) -> None:
    result = run(
        "accounts",
        "connect",
        "--org",
        "org-1",
        "--ad-account",
        "act_1",
        stdin="EAAtok0000000",
        env={"META_TOKEN_ENCRYPTION_KEY": "c2hvcnQ="},
    )
    assert result.exit_code == 2
    assert "must decode to 32 bytes, it decodes to 5" in result.stderr
    assert "c2hvcnQ=" not in result.stderr


def test_rotation_with_old_keys_and_its_failure_naming_the_account(
    env: dict[str, str], sandbox_endpoint: str, fake_token: str
) -> None:
    url = env["METASPEND_DATABASE_URL"]
    old = env["META_TOKEN_ENCRYPTION_KEY"]
    run("accounts", "connect", "--org", "org-1", "--ad-account", "act_1", stdin=fake_token)
    run("accounts", "connect", "--org", "org-2", "--ad-account", "act_2", stdin="EAAsecond000000")
    with db.engine_for(url).connect() as conn:
        before = dict(conn.execute(sa.select(oauth_token.c.id, oauth_token.c.access_token_encrypted)).all())

    new = generate_key()
    failed = run("keys", "rotate", env={"META_TOKEN_ENCRYPTION_KEY": new})
    assert failed.exit_code == 2
    assert "token of connected account" in failed.stderr and "neither META_TOKEN_ENCRYPTION_KEY" in failed.stderr
    with db.engine_for(url).connect() as conn:
        assert dict(conn.execute(sa.select(oauth_token.c.id, oauth_token.c.access_token_encrypted)).all()) == before

    rotated = run("keys", "rotate", env={"META_TOKEN_ENCRYPTION_KEY": new, "META_TOKEN_ENCRYPTION_OLD_KEYS": old})
    assert rotated.exit_code == 0, rotated.output
    assert "re-encrypted 2 token(s)" in rotated.output
    # the old key can now be dropped: every token decrypts with the new key alone
    again = run("keys", "rotate", env={"META_TOKEN_ENCRYPTION_KEY": new})
    assert "re-encrypted 0 token(s)" in again.output and "2 already used it" in again.output


def test_unmigrated_warehouse_says_to_upgrade(env: dict[str, str], tmp_path: Path) -> None:
    result = run("accounts", "list", env={"METASPEND_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"})
    assert result.exit_code == 2
    assert "run `metaspend db upgrade`" in result.stderr


def test_console_script_reads_the_token_from_stdin_and_never_prints_it(
    env: dict[str, str], sandbox_endpoint: str, fake_token: str
) -> None:
    """The installed `metaspend`, in its own process: its whole output and the database's plain text."""
    full_env = {**os.environ, **env}
    steps = [
        (["db", "upgrade"], None),
        (["accounts", "connect", "--org", "org-1", "--ad-account", "act_1"], fake_token),
        (["accounts", "list"], None),
        (["keys", "rotate"], None),
        (["accounts", "connect", "--org", "org-1", "--ad-account", "bad"], fake_token),
    ]
    outputs = []
    for args, stdin in steps:
        proc = subprocess.run(
            [str(METASPEND), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=120,
            check=False,
        )
        outputs.append(proc.stdout + proc.stderr)
    assert "org-1" in outputs[2]
    assert proc.returncode == 2
    for output in outputs:
        assert fake_token not in output
    with db.engine_for(env["METASPEND_DATABASE_URL"]).connect() as conn:
        stored = conn.execute(sa.select(oauth_token.c.access_token_encrypted)).scalar_one()
    assert fake_token not in stored


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["roas", "--from", "2026-01-01", "--to", "2026-01-02"], "Missing option '--org'"),
        (["roas", "--org", "a", "--from", "x", "--to", "y", "--group-by", "site"], "Invalid value for '--group-by'"),
        (["sandbox", "serve", "--fault", "{not json"], "--fault '{not json' is not JSON"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ],
)
def test_the_console_script_reports_usage_errors_in_one_line(
    env: dict[str, str], args: list[str], message: str
) -> None:
    proc = subprocess.run(
        [str(METASPEND), *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=120, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("metaspend: error: ")
    assert message in proc.stderr
