"""A read-only PostgreSQL role for BI tools: SELECT on the reporting tables, and nothing else.

Not granted: `oauth_token` and `connected_account` (credentials and who is connected), the raw
insights and the fetch log (the pipeline's own working data), and the product's `lead` and `sale`
(customer records the product owns; the ROAS tables carry their counts and sums per day).
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
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class GrantReport:
    role: str
    created: bool
    password_set: bool
    granted: tuple[str, ...]
    public_can_create: bool  # PUBLIC may still CREATE in the schema (PostgreSQL before 15 by default)


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
    owned = conn.execute(
        sa.text(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
            " WHERE r.rolname = :role AND c.relnamespace = current_schema()::regnamespace"
        ),
        {"role": role},
    ).scalar_one()
    if owned:
        raise InvalidInputError(f"role {role} owns {owned} table(s) or view(s) in the warehouse; choose another role")
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
    conn.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {quoted}")
    conn.exec_driver_sql(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {quoted}")
    conn.exec_driver_sql(f"REVOKE CREATE ON SCHEMA {schema} FROM {quoted}")
    conn.exec_driver_sql(f"REVOKE CREATE, TEMPORARY ON DATABASE {database} FROM {quoted}")
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
    public_can_create = conn.execute(
        sa.text("SELECT has_schema_privilege('public', current_schema(), 'CREATE')")
    ).scalar_one()
    return GrantReport(role, not exists, password is not None, granted, bool(public_can_create))
