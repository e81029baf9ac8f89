"""A read-only PostgreSQL role for BI tools: SELECT on the reporting tables, and nothing else.

Not granted: `oauth_token` and `connected_account` (credentials and who is connected), the raw
insights and the fetch log (the pipeline's own working data), and the product's `lead` and `sale`
(customer records the product owns; the ROAS tables carry their counts and sums per day).

"Nothing else" is made true each time the command runs: every privilege the role holds in the
database beyond its list is revoked (on tables and their columns, sequences, routines, schemas,
types, languages, large objects, foreign servers, the database, and the default privileges that
would hand it tables created later), and TEMPORARY is revoked from PUBLIC, through which every role
may create temporary tables. What it cannot revoke (a privilege PUBLIC holds on a table, a
TEMPORARY it may not take back) it reports.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from metaspend_pipeline.errors import InvalidInputError

# The one list of what a BI role may read. Tables or views; those that do not exist (yet) are skipped,
# so run `metaspend db grant-bi` again after a `db upgrade` that adds one.
REPORTING_RELATIONS = (
    "meta_spend_daily",
    "meta_roas_by_campaign",
    "meta_roas_by_adset",
    "meta_roas_by_ad",
    "meta_ad_account",
    "meta_campaign",
    "meta_adset",
    "meta_ad",
    "meta_roas_by_campaign_named",
    "meta_roas_by_adset_named",
    "meta_roas_by_ad_named",
    "meta_conversions_daily",
    "fx_rates_daily",
    "meta_spend_by_age_gender",
    "meta_spend_by_country",
    "meta_spend_by_placement",
    "meta_reach_weekly",
    "meta_reach_monthly",
    "meta_spend_by_age_gender_named",
    "meta_spend_by_country_named",
    "meta_spend_by_placement_named",
    "meta_reach_weekly_named",
    "meta_reach_monthly_named",
)

INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for "permission denied"
_SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema')"
_OWNED = """
SELECT (SELECT count(*) FROM pg_database WHERE datname = current_database() AND datdba = r.oid)
     + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)
     + (SELECT count(*) FROM pg_class WHERE relowner = r.oid AND relnamespace::regnamespace::text NOT LIKE 'pg_temp%')
     + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)
FROM pg_roles r WHERE r.rolname = :role
"""
# Every object of the database whose ACL names the role: (what it is, the SQL to revoke it all).
_HELD = """
SELECT CASE c.relkind WHEN 'S' THEN 'sequence ' ELSE 'table ' END || c.oid::regclass::text,
       'REVOKE ALL ON ' || CASE c.relkind WHEN 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || c.oid::regclass::text
FROM pg_class c
WHERE c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p')
  AND (EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = :oid)
       OR EXISTS (SELECT 1 FROM pg_attribute t, aclexplode(t.attacl) a WHERE t.attrelid = c.oid AND a.grantee = :oid))
UNION ALL
SELECT 'routine ' || p.oid::regprocedure::text, 'REVOKE ALL ON ROUTINE ' || p.oid::regprocedure::text
FROM pg_proc p WHERE EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = :oid)
UNION ALL
SELECT 'schema ' || quote_ident(n.nspname), 'REVOKE ALL ON SCHEMA ' || quote_ident(n.nspname)
FROM pg_namespace n WHERE EXISTS (SELECT 1 FROM aclexplode(n.nspacl) a WHERE a.grantee = :oid)
UNION ALL
SELECT 'type ' || t.oid::regtype::text, 'REVOKE ALL ON TYPE ' || t.oid::regtype::text
FROM pg_type t WHERE EXISTS (SELECT 1 FROM aclexplode(t.typacl) a WHERE a.grantee = :oid)
UNION ALL
SELECT 'language ' || quote_ident(l.lanname), 'REVOKE ALL ON LANGUAGE ' || quote_ident(l.lanname)
FROM pg_language l WHERE EXISTS (SELECT 1 FROM aclexplode(l.lanacl) a WHERE a.grantee = :oid)
UNION ALL
SELECT 'large object ' || m.oid, 'REVOKE ALL ON LARGE OBJECT ' || m.oid
FROM pg_largeobject_metadata m WHERE EXISTS (SELECT 1 FROM aclexplode(m.lomacl) a WHERE a.grantee = :oid)
UNION ALL
SELECT 'foreign data wrapper ' || quote_ident(w.fdwname), 'REVOKE ALL ON FOREIGN DATA WRAPPER ' || quote_ident(w.fdwname)
FROM pg_foreign_data_wrapper w WHERE EXISTS (SELECT 1 FROM aclexplode(w.fdwacl) a WHERE a.grantee = :oid)
UNION ALL
SELECT 'foreign server ' || quote_ident(f.srvname), 'REVOKE ALL ON FOREIGN SERVER ' || quote_ident(f.srvname)
FROM pg_foreign_server f WHERE EXISTS (SELECT 1 FROM aclexplode(f.srvacl) a WHERE a.grantee = :oid)
UNION ALL
SELECT 'database ' || quote_ident(d.datname), 'REVOKE ALL ON DATABASE ' || quote_ident(d.datname)
FROM pg_database d WHERE EXISTS (SELECT 1 FROM aclexplode(d.datacl) a WHERE a.grantee = :oid)
UNION ALL
SELECT 'tablespace ' || quote_ident(s.spcname), 'REVOKE ALL ON TABLESPACE ' || quote_ident(s.spcname)
FROM pg_tablespace s WHERE EXISTS (SELECT 1 FROM aclexplode(s.spcacl) a WHERE a.grantee = :oid)
UNION ALL
SELECT 'default privileges of ' || quote_ident(pg_get_userbyid(d.defaclrole))
         || COALESCE(' in schema ' || quote_ident(n.nspname), '') || ' on '
         || CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'routines'
                                 WHEN 'T' THEN 'types' ELSE 'schemas' END,
       'ALTER DEFAULT PRIVILEGES FOR ROLE ' || quote_ident(pg_get_userbyid(d.defaclrole))
         || COALESCE(' IN SCHEMA ' || quote_ident(n.nspname), '') || ' REVOKE ALL ON '
         || CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'ROUTINES'
                                 WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END
FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
WHERE EXISTS (SELECT 1 FROM aclexplode(d.defaclacl) a WHERE a.grantee = :oid)
"""
# Relations the role may use all the same (through PUBLIC), beyond what it was granted.
_USABLE = f"""
SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p') AND n.nspname NOT IN {_SYSTEM_SCHEMAS}
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  AND has_schema_privilege(:oid, n.oid, 'USAGE')
  AND (has_table_privilege(:oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
       OR (c.relkind <> 'S' AND has_any_column_privilege(:oid, c.oid, 'SELECT, INSERT, UPDATE, REFERENCES')))
  AND NOT (c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(:granted))
ORDER BY 1
"""
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class GrantReport:
    role: str
    created: bool
    password_set: bool
    granted: tuple[str, ...]
    public_can_create: bool  # PUBLIC may still CREATE in the schema (PostgreSQL before 15 by default)
    revoked: tuple[str, ...] = ()  # what the role held beyond its list, now revoked
    temp_revoked_from_public: bool = False  # this run took TEMPORARY on the database from PUBLIC
    still_held: tuple[str, ...] = ()  # what the role can still do beyond its list (through PUBLIC)


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of `password` (RFC 5803), as `CREATE ROLE ... PASSWORD` takes it."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def validate_role_name(role: str) -> str:
    if not _ROLE_NAME.match(role):
        raise InvalidInputError(
            f"--role {role!r} is not a plain PostgreSQL role name: lower-case letters, digits and _, "
            "not starting with a digit, at most 63 characters"
        )
    return role


def _refuse_powerful_role(conn: sa.Connection, role: str) -> None:
    row = conn.execute(
        sa.text(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,"
            " rolname = current_user AS is_me FROM pg_roles WHERE rolname = :role"
        ),
        {"role": role},
    ).first()
    if row is None:
        return
    if row.is_me or row.rolsuper or row.rolcreaterole or row.rolreplication or row.rolbypassrls:
        raise InvalidInputError(
            f"role {role} is this connection's own role or a privileged one; choose a role of its own for BI"
        )
    owned = conn.execute(sa.text(_OWNED), {"role": role}).scalar_one()
    if owned:
        raise InvalidInputError(
            f"role {role} owns {owned} object(s) in this database (the database, schemas, tables, views, sequences "
            "or routines), and an owner holds every privilege on them; choose another role"
        )
    member_of = conn.execute(
        sa.text(
            "SELECT string_agg(g.rolname, ', ' ORDER BY g.rolname) FROM pg_auth_members m"
            " JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = :role"
        ),
        {"role": role},
    ).scalar_one()
    if member_of:
        raise InvalidInputError(
            f"role {role} is a member of {member_of} and would read what they read; "
            f"REVOKE {member_of} FROM {role} first, or choose another role"
        )


def grant_bi(conn: sa.Connection, role: str, password: str | None) -> GrantReport:
    """Create or update `role`: LOGIN, read-only, SELECT on the existing reporting relations only.

    Runs in the caller's transaction. The password is sent as a SCRAM verifier computed here, so
    its text never reaches the server's statement log.
    """
    if conn.dialect.name != "postgresql":
        raise InvalidInputError(
            "grant-bi needs PostgreSQL: SQLite has no roles (give BI tools a copy of the file instead)"
        )
    role = validate_role_name(role)
    _refuse_powerful_role(conn, role)
    preparer = conn.dialect.identifier_preparer
    quoted = preparer.quote(role)
    exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).first()
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
    conn.exec_driver_sql(f"{'ALTER' if exists else 'CREATE'} ROLE {quoted} {attributes}")
    if password is not None:
        conn.exec_driver_sql(f"ALTER ROLE {quoted} PASSWORD '{scram_verifier(password)}'")
    conn.exec_driver_sql(f"ALTER ROLE {quoted} SET default_transaction_read_only = on")

    database = preparer.quote(conn.execute(sa.text("SELECT current_database()")).scalar_one())
    schema = preparer.quote(conn.execute(sa.text("SELECT current_schema()")).scalar_one())
    oid = conn.execute(sa.text("SELECT oid FROM pg_roles WHERE rolname = :role"), {"role": role}).scalar_one()
    held = conn.execute(sa.text(_HELD), {"oid": oid}).all()
    for _, revoke in held:
        conn.exec_driver_sql(f"{revoke} FROM {quoted}")
    conn.exec_driver_sql(f"GRANT CONNECT ON DATABASE {database} TO {quoted}")
    conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {quoted}")
    existing = {
        name
        for (name,) in conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
                " AND c.relkind IN ('r', 'v', 'm', 'p') AND c.relname = ANY(:names)"
            ),
            {"names": list(REPORTING_RELATIONS)},
        )
    }
    granted = tuple(name for name in REPORTING_RELATIONS if name in existing)
    for name in granted:
        conn.exec_driver_sql(f"GRANT SELECT ON {schema}.{preparer.quote(name)} TO {quoted}")
    # PUBLIC holds TEMPORARY on every new database: through it the role could create temporary tables.
    # The pipeline creates none; the database's owner keeps it (an owner's privileges are its own).
    temp = "SELECT has_database_privilege(:who, current_database(), 'TEMPORARY')"
    temp_revoked = False
    if conn.execute(sa.text(temp), {"who": "public"}).scalar_one():
        conn.exec_driver_sql(f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC")
        temp_revoked = not conn.execute(sa.text(temp), {"who": "public"}).scalar_one()
    still_held = [f"table {name}" for (name,) in conn.execute(sa.text(_USABLE), {"oid": oid, "granted": list(granted)})]
    if conn.execute(sa.text(temp), {"who": role}).scalar_one():
        still_held.append(f"TEMPORARY on database {database}")
    public_can_create = conn.execute(
        sa.text("SELECT has_schema_privilege('public', current_schema(), 'CREATE')")
    ).scalar_one()
    expected = {f"database {database}", f"schema {schema}"} | {f"table {name}" for name in granted}
    revoked = tuple(sorted({what for what, _ in held} - expected))
    return GrantReport(
        role,
        not exists,
        password is not None,
        granted,
        bool(public_can_create),
        revoked,
        temp_revoked,
        tuple(still_held),
    )
