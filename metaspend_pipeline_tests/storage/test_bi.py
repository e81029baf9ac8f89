"""`metaspend db grant-bi`: a role that reads the reporting tables and nothing else; their COMMENTs."""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner, Result
from psycopg import errors

from metaspend_pipeline import report
from metaspend_pipeline.cli import cli
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.bi import REPORTING_RELATIONS
from metaspend_pipeline.storage.schema import meta_roas_by_campaign, metadata
from metaspend_pipeline_tests.bad_inputs import BI_GRANTS, BiGrant
from metaspend_pipeline_tests.conftest import _admin, ascii_id
from metaspend_pipeline_tests.dates import day, iso
from metaspend_pipeline_tests.test_roas import example  # noqa: F401 - the ROAS example, as a fixture

postgres_only = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
NOT_REPORTING = (
    "oauth_token",
    "connected_account",
    "lead",
    "sale",
    "meta_raw_insights",
    "meta_raw_breakdowns",
    "meta_raw_reach",
    "meta_fetch_log",
)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def role(db_url: str) -> Iterator[str]:
    """A role name of the test's own, dropped (with what it was granted) before its database."""
    name = f"bi_{uuid.uuid4().hex[:10]}"
    yield name
    with _admin() as admin:
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    if exists and db.is_postgres(db.engine_for(db_url)):
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{name}"')
    with _admin() as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def connect_as(db_url: str, role: str, password: str | None = None) -> psycopg.Connection:
    url = sa.make_url(db_url)
    return psycopg.connect(
        host=url.host, port=url.port or 5432, dbname=url.database, user=role, password=password, autocommit=False
    )


def roas_row() -> dict[str, object]:
    return {
        "organization_id": "org-1",
        "date": dt.date(2026, 10, 1),
        "campaign_id": "c-1",
        "currency": "USD",
        "leads_count": 10,
        "sales_count": 2,
        "revenue": Decimal("300.00"),
        "spend": Decimal("100.00"),
        "avg_ticket": Decimal("150.00"),
        "conversion_rate": Decimal("0.2"),
        "roas": Decimal("3"),
        "revenue_currency_mismatch": False,
        "updated_at": dt.datetime(2026, 10, 2, tzinfo=dt.UTC),
    }


@postgres_only
def test_the_role_reads_roas_and_nothing_else(env: dict[str, str], role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    password = "pw-" + secrets.token_hex(12)
    monkeypatch.setenv("BI_PASSWORD", password)
    with db.engine_for(env["METASPEND_DATABASE_URL"]).begin() as conn:
        conn.execute(meta_roas_by_campaign.insert().values(**roas_row()))
    result = run("db", "grant-bi", "--role", role, "--password-env", "BI_PASSWORD")
    assert result.exit_code == 0, result.output
    assert f"created role {role} with the password from BI_PASSWORD" in result.output
    assert password not in result.output

    url = env["METASPEND_DATABASE_URL"]
    with connect_as(url, role, password) as conn:
        assert conn.execute(
            "SELECT campaign_id, sum(revenue) / nullif(sum(spend), 0) FROM meta_roas_by_campaign GROUP BY 1"
        ).fetchall() == [("c-1", Decimal("3"))]
        conn.rollback()
        for table in (
            "meta_spend_daily",
            "meta_roas_by_adset",
            "meta_roas_by_ad",
            "meta_ad_account",
            "meta_spend_by_age_gender_named",
            "meta_spend_by_placement",
            "meta_reach_monthly_named",
            "meta_reach_weekly",
        ):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        conn.rollback()
        for table in NOT_REPORTING:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table}")
            conn.rollback()
        # read-only by default, and without write privileges even when it asks for a writable transaction
        with pytest.raises(errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM meta_roas_by_campaign")
        conn.rollback()
        for statement in (
            "INSERT INTO meta_roas_by_campaign (organization_id, date, campaign_id, leads_count, sales_count,"
            " spend, revenue_currency_mismatch, updated_at) VALUES ('o', '2026-10-01', 'c', 0, 0, 1, false, now())",
            "UPDATE meta_roas_by_campaign SET spend = 0",
            "DELETE FROM meta_roas_by_campaign",
            "TRUNCATE meta_roas_by_campaign",
            "UPDATE oauth_token SET access_token_encrypted = ''",
            "CREATE TABLE bi_scratch (x int)",
            "CREATE SCHEMA bi_scratch",
            "CREATE VIEW bi_view AS SELECT 1",
            "ALTER TABLE meta_roas_by_campaign ADD COLUMN x int",
            "COMMENT ON TABLE meta_roas_by_campaign IS 'x'",
        ):
            conn.execute("SET TRANSACTION READ WRITE")
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
    with db.engine_for(url).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(meta_roas_by_campaign)).scalar_one() == 1
        attributes = conn.execute(
            sa.text(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolpassword FROM pg_authid WHERE rolname = :r"
            ),
            {"r": role},
        ).one()
    assert attributes[:4] == (False, False, False, True)
    assert attributes.rolpassword.startswith("SCRAM-SHA-256$4096:")
    assert password not in attributes.rolpassword


@postgres_only
def test_running_it_again_updates_the_role_and_takes_back_other_grants(env: dict[str, str], role: str) -> None:
    url = env["METASPEND_DATABASE_URL"]
    assert run("db", "grant-bi", "--role", role).exit_code == 0
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'GRANT SELECT, INSERT ON oauth_token, lead TO "{role}"')
        admin.execute(f'GRANT INSERT ON meta_spend_daily TO "{role}"')
    result = run("db", "grant-bi", "--role", role)
    assert result.exit_code == 0, result.output
    assert f"updated role {role} (password unchanged)" in result.output
    with psycopg.connect(url) as conn:
        granted = conn.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants WHERE grantee = %s"
            " ORDER BY 1, 2",
            (role,),
        ).fetchall()
    # every reporting table and view exists at the head revision: each is granted, SELECT only
    assert granted == [(t, "SELECT") for t in sorted(REPORTING_RELATIONS)]


@postgres_only
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--role", "postgres"), "role postgres is this connection's own role or a privileged one"),
        (("--role", "Robert'); DROP TABLE lead;--"), "is not a plain PostgreSQL role name"),
        (("--role", "bi_reader", "--password-env", "NOT_SET_ANYWHERE"), "NOT_SET_ANYWHERE: the environment variable"),
    ],
)
def test_refusals_are_one_line_exit_2(env: dict[str, str], args: tuple[str, ...], message: str) -> None:
    result = run("db", "grant-bi", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    with psycopg.connect(env["METASPEND_DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'bi_reader'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM lead").fetchone() == (0,)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_is_refused(env: dict[str, str]) -> None:
    result = run("db", "grant-bi", "--role", "metaspend_bi")
    assert result.exit_code == 2
    assert "grant-bi needs PostgreSQL" in result.output
    assert "is SQLite, which has no roles" in result.output


@postgres_only
def test_every_reporting_table_and_column_has_a_comment(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        relations = [
            name
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname = ANY(%s)",
                (list(REPORTING_RELATIONS),),
            )
        ]
        assert set(relations) == set(REPORTING_RELATIONS)
        for relation in relations:
            comment = conn.execute("SELECT obj_description(%s::regclass, 'pg_class')", (relation,)).fetchone()[0]
            assert comment, relation
            columns = conn.execute(
                "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a"
                " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                (relation,),
            ).fetchall()
            if relation in metadata.tables:  # a table (a view's text comes from its table's)
                assert comment == metadata.tables[relation].comment
                assert len(columns) == len(metadata.tables[relation].columns)
            missing = [name for name, text in columns if not text]
            assert missing == [], f"{relation}: columns without a COMMENT: {missing}"


@postgres_only
def test_the_comments_migration_goes_down_and_up(db_url: str) -> None:
    command.downgrade(db.alembic_config(db_url), "0004")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT col_description('meta_spend_daily'::regclass, 1)").fetchone() == (None,)
    db.upgrade(db_url)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT col_description('meta_spend_daily'::regclass, 1)").fetchone() == (
            metadata.tables["meta_spend_daily"].c.id.comment,
        )


PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def scram_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL that checks passwords (scram-sha-256): the shared one trusts everyone."""
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL 15's initdb and runuser to start a cluster that checks passwords")
    # not under pytest's tmp_path: its parent is private to root, and initdb runs as postgres
    directory = Path(tempfile.mkdtemp(prefix="metaspend-scram-"))
    admin_password = secrets.token_hex(12)
    (directory / "pw").write_text(admin_password)
    shutil.chown(directory, "postgres")
    shutil.chown(directory / "pw", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def as_postgres(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60)

    data = directory / "data"
    as_postgres(
        str(PG_BIN / "initdb"), "-D", str(data), "-A", "scram-sha-256", "-U", "postgres", f"--pwfile={directory / 'pw'}"
    )
    as_postgres(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        f"-p {port} -k {directory}",
        "-l",
        str(directory / "log"),
        "-w",
        "start",
    )
    try:
        admin_url = f"postgresql://postgres:{admin_password}@127.0.0.1:{port}/postgres"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE metaspend")
        yield admin_url.rsplit("/", 1)[0] + "/metaspend"
    finally:
        db.engine_for(admin_url.rsplit("/", 1)[0] + "/metaspend").dispose()
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.postgres
def test_the_role_logs_in_with_the_password_from_the_env_var_only(
    scram_cluster: str, monkeypatch: pytest.MonkeyPatch, encryption_key: str
) -> None:
    monkeypatch.setenv("METASPEND_DATABASE_URL", scram_cluster)
    monkeypatch.setenv("META_TOKEN_ENCRYPTION_KEY", encryption_key)
    monkeypatch.setenv("METASPEND_BI_PASSWORD", "first " + secrets.token_hex(8))
    db.upgrade(scram_cluster)
    assert run("db", "grant-bi", "--role", "metaspend_bi", "--password-env", "METASPEND_BI_PASSWORD").exit_code == 0
    with connect_as(scram_cluster, "metaspend_bi", os.environ["METASPEND_BI_PASSWORD"]) as conn:
        assert conn.execute("SELECT count(*) FROM meta_roas_by_ad").fetchone() == (0,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect_as(scram_cluster, "metaspend_bi", "wrong")
    # a new password replaces the old one; without --password-env it is left as it is
    old = os.environ["METASPEND_BI_PASSWORD"]
    monkeypatch.setenv("METASPEND_BI_PASSWORD", secrets.token_hex(8))
    assert run("db", "grant-bi", "--role", "metaspend_bi", "--password-env", "METASPEND_BI_PASSWORD").exit_code == 0
    assert run("db", "grant-bi", "--role", "metaspend_bi").exit_code == 0
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect_as(scram_cluster, "metaspend_bi", old)
    with connect_as(scram_cluster, "metaspend_bi", os.environ["METASPEND_BI_PASSWORD"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("metaspend_bi",)


DOCS = Path(__file__).resolve().parents[2] / "docs"
# The sections that give BI users ROAS in SQL: every ```sql block in them must equal `metaspend roas`.
ROAS_SQL_SECTIONS = (("warehouse.md", "## BI access"), ("roas.md", "## ROAS in SQL"))
# A result column of the SQL -> the key of `metaspend roas`'s item it must equal.
ROAS_SQL_COLUMNS = {
    "campaign_id": "campaignId",
    "campaign_name": "campaignName",
    "currency": "currency",
    "leads": "leadsCount",
    "sales": "salesCount",
    "revenue": "revenue",
    "spend": "spend",
    "roas": "roas",
    "avg_ticket": "avgTicket",
    "conversion_rate": "conversionRate",
}
REQUIRED_COLUMNS = {"campaign_id", "currency", "leads", "sales", "revenue", "spend", "roas"}
NOT_IN_THE_REPORT = {"objective", "campaign_effective_status"}  # the named view's, shown beside the numbers


def docs_roas_sql() -> list[tuple[str, str]]:
    """(where, SQL) of every ```sql block of the ROAS-in-SQL sections of docs/."""
    examples = []
    for page, heading in ROAS_SQL_SECTIONS:
        text = (DOCS / page).read_text()
        assert f"\n{heading}\n" in text, f"docs/{page} lost its section {heading!r}"
        section = text[text.index(f"\n{heading}\n") + 1 :]
        following = section.find("\n## ")
        section = section if following < 0 else section[:following]
        blocks = re.findall(r"^```sql\n(.*?)^```$", section, re.S | re.M)
        assert blocks, f"docs/{page}, {heading!r}: no ```sql block"
        examples += [(f"docs/{page}, {heading!r}, block {n}", block) for n, block in enumerate(blocks, 1)]
    return examples


@postgres_only
def test_the_docs_roas_sql_run_as_the_role_equals_metaspend_roas(example: str, role: str) -> None:  # noqa: F811
    """Both ROAS queries of docs/ (the ROAS table, and the named view) give, as the BI role, exactly the
    numbers `metaspend roas` prints: NULL ROAS without revenue, no revenue for a currency mismatch."""
    assert run("db", "grant-bi", "--role", role).exit_code == 0
    with db.engine_for(example).connect() as conn:
        expected = report.roas_report(conn, "acme", "campaign", day(4), day(5))
    examples = docs_roas_sql()
    assert len(examples) == 2, [where for where, _ in examples]
    for where, documented in examples:
        for literal in ("'org-123'", "'2024-03-01'", "'2024-03-31'"):
            assert documented.count(literal) == 1, f"{where}: expected {literal} once, the test replaces it"
        sql = (
            documented.replace("'org-123'", "'acme'")
            .replace("'2024-03-01'", f"'{iso(4)}'")
            .replace("'2024-03-31'", f"'{iso(5)}'")
        )
        with connect_as(example, role) as conn:
            cursor = conn.execute(sql)
            columns = [c.name for c in cursor.description]
            rows = cursor.fetchall()
        assert set(columns) >= REQUIRED_COLUMNS, f"{where}: columns {columns}"
        unknown = set(columns) - set(ROAS_SQL_COLUMNS) - NOT_IN_THE_REPORT
        assert not unknown, f"{where}: columns the test does not compare: {unknown}"
        compared = [c for c in columns if c in ROAS_SQL_COLUMNS]
        got = [{ROAS_SQL_COLUMNS[c]: v for c, v in zip(columns, row, strict=True) if c in compared} for row in rows]
        want = [{ROAS_SQL_COLUMNS[c]: item[ROAS_SQL_COLUMNS[c]] for c in compared} for item in expected]
        assert got == want, where
        # the example has every case: a currency mismatch, no revenue, no spend, and 1000 / 400 = 2.5
        assert {g["campaignId"]: g["roas"] for g in got} == {
            "104": Decimal("2.500000"),
            "101": None,
            "102": None,
            "103": None,
        }, where


@postgres_only
def test_a_user_who_may_not_create_roles_gets_one_line_and_no_change(
    env: dict[str, str], role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    weak = f"weak_{uuid.uuid4().hex[:8]}"
    url = env["METASPEND_DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{weak}" LOGIN')
        admin.execute(f'GRANT SELECT ON alembic_version TO "{weak}"')
    try:
        monkeypatch.setenv("METASPEND_DATABASE_URL", str(sa.make_url(url).set(username=weak)))
        result = run("db", "grant-bi", "--role", role)
        assert result.exit_code == 2, result.output
        assert f"grant-bi as {weak} failed: permission denied to create role" in result.output
        assert "as the tables' owner with CREATEROLE, or as a superuser" in result.output
        assert len(result.output.strip().splitlines()) == 1
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{weak}"')
            admin.execute(f'DROP ROLE "{weak}"')
    with _admin() as admin:
        assert admin.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)).fetchone() == (0,)


def _as_owner(url: str, statements: tuple[str, ...], role: str) -> None:
    database = sa.make_url(url).database
    with psycopg.connect(url, autocommit=True) as owner:
        for statement in statements:
            owner.execute(statement.format(role=f'"{role}"', database=f'"{database}"'))


@postgres_only
@pytest.mark.parametrize("case", BI_GRANTS, ids=lambda c: ascii_id(c.tried))
def test_running_it_again_clears_every_privilege_beyond_its_list(env: dict[str, str], role: str, case: BiGrant) -> None:
    """Before: the role kept a grant on another schema's table, default privileges handed it tables
    created later (a copy of oauth_token), and PUBLIC's TEMPORARY let it create temporary tables."""
    url = env["METASPEND_DATABASE_URL"]
    assert run("db", "grant-bi", "--role", role).exit_code == 0
    _as_owner(url, case.given, role)
    result = run("db", "grant-bi", "--role", role)
    assert result.exit_code == 0, result.output
    if case.revoked:
        assert f"revoked every privilege it held beyond that: {case.revoked}\n" in result.stdout
    else:
        assert "revoked every privilege" not in result.stdout
    _as_owner(url, case.after, role)
    with connect_as(url, role) as conn:
        conn.execute("SET TRANSACTION READ WRITE")  # read-only by default: what is left is the privileges
        if case.outcome == "refused":
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(case.tried)
            assert "warning" not in result.stderr
            assert "; nothing else\n" in result.stdout
        else:
            conn.execute(case.tried)
            assert case.outcome.format(role=role) in result.stderr
            assert "; see the warning below\n" in result.stdout


@postgres_only
def test_what_the_role_holds_afterwards_is_its_list_and_nothing_else(env: dict[str, str], role: str) -> None:
    """Every hand grant of BI_GRANTS at once (but PUBLIC's, which is not the role's), then grant-bi:
    every ACL entry of the database naming the role is CONNECT, USAGE on the schema or SELECT on a
    reporting relation; PUBLIC has lost TEMPORARY, with a notice, and the database's owner kept it."""
    url = env["METASPEND_DATABASE_URL"]
    created = run("db", "grant-bi", "--role", role)
    assert created.exit_code == 0
    assert "notice: revoked TEMPORARY on this database from PUBLIC" in created.stderr
    for case in BI_GRANTS:
        if case.outcome == "refused":
            _as_owner(url, case.given, role)
    first = run("db", "grant-bi", "--role", role)
    second = run("db", "grant-bi", "--role", role)
    assert first.exit_code == second.exit_code == 0
    assert "notice" not in first.stderr + second.stderr  # taken once, when the role was created
    assert "revoked every privilege" not in second.stdout
    database = sa.make_url(url).database
    with psycopg.connect(url) as conn:
        held = conn.execute(
            """
            SELECT 'table', c.relname, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a
             WHERE a.grantee = %(role)s::regrole
            UNION ALL SELECT 'column', c.relname, a.privilege_type FROM pg_attribute t
              JOIN pg_class c ON c.oid = t.attrelid, aclexplode(t.attacl) a WHERE a.grantee = %(role)s::regrole
            UNION ALL SELECT 'schema', n.nspname, a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a
             WHERE a.grantee = %(role)s::regrole
            UNION ALL SELECT 'routine', p.proname, a.privilege_type FROM pg_proc p, aclexplode(p.proacl) a
             WHERE a.grantee = %(role)s::regrole
            UNION ALL SELECT 'database', d.datname, a.privilege_type FROM pg_database d, aclexplode(d.datacl) a
             WHERE a.grantee = %(role)s::regrole
            UNION ALL SELECT 'default', d.defaclobjtype::text, a.privilege_type FROM pg_default_acl d,
                   aclexplode(d.defaclacl) a WHERE a.grantee = %(role)s::regrole
            """,
            {"role": role},
        ).fetchall()
        public_temp, owner_temp = conn.execute(
            "SELECT has_database_privilege('public', current_database(), 'TEMPORARY'),"
            " has_database_privilege(pg_get_userbyid(datdba), current_database(), 'TEMPORARY')"
            " FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert sorted(held) == sorted(
        [("database", database, "CONNECT"), ("schema", "public", "USAGE")]
        + [("table", name, "SELECT") for name in REPORTING_RELATIONS]
    )
    assert (public_temp, owner_temp) == (False, True)
