"""`metaspend demo`: the README's main command, on the embedded default.

Everything it creates lives under `.metaspend/` in the working directory: the SQLite warehouse,
a demo encryption key (in `.metaspend/demo.env`, which `source` loads into a shell), and the
demo organizations' connected accounts.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from metaspend_pipeline import credentials
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.storage import db
from metaspend_pipeline.tokens import KeyRing, generate_key

DEMO_DIR = Path(".metaspend")
DEMO_ENV = DEMO_DIR / "demo.env"


def load_demo_env(directory: Path = DEMO_DIR) -> dict[str, str]:
    """The demo's environment file, created with a new key the first time."""
    path = directory / DEMO_ENV.name
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                name, _, value = line[len("export ") :].partition("=")
                values[name] = value.strip("'\"")
    if "META_TOKEN_ENCRYPTION_KEY" not in values:
        values["META_TOKEN_ENCRYPTION_KEY"] = generate_key()
    values.setdefault("METASPEND_DATABASE_URL", f"sqlite:///{(directory / 'metaspend.db').resolve()}")
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"export {k}='{v}'\n" for k, v in sorted(values.items())))
    path.chmod(0o600)
    return values


def prepare_environment() -> Settings:
    """Settings for the demo: the user's own environment wins over the demo file."""
    for name, value in load_demo_env().items():
        os.environ.setdefault(name, value)
    return Settings.from_env()


def connect_demo_accounts(settings: Settings, accounts: dict[str, list[str]]) -> None:
    engine = db.engine_for(settings.database_url)
    keyring = KeyRing.from_settings(settings)
    with engine.begin() as conn:
        for organization_id, ad_accounts in accounts.items():
            credentials.store_connection(
                conn,
                keyring,
                organization_id,
                "INSTAGRAM",
                ad_accounts,
                "EAAdemo" + secrets.token_hex(16),
                None,
            )


def run(echo=print) -> None:  # type: ignore[no-untyped-def]
    settings = prepare_environment()
    echo(f"==> warehouse {db.display_url(settings.database_url)}")
    db.upgrade(settings.database_url)
    connect_demo_accounts(settings, {"demo-org-1": ["act_1000000001"], "demo-org-2": ["act_2000000001"]})
    with db.engine_for(settings.database_url).connect() as conn:
        for summary in store.list_accounts(conn):
            ad_accounts = ", ".join(summary.ad_accounts)
            echo(f"    {summary.organization_id}: {summary.status}, ad accounts {ad_accounts}")
    echo(f"==> done; `source {DEMO_ENV}` to use the demo's key and warehouse in your shell")
