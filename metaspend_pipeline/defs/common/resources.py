"""The resources every definition uses: the warehouse (`warehouse`) and Meta (`meta`).

Settings left empty are read from the environment at execution time (see
docs/configuration.md); secrets are given as `EnvVar`s so the Dagster UI shows the variable's
name, never its value. Decrypted tokens exist only inside `MetaClient` objects created at run
time, held in private attributes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from metaspend_pipeline import credentials
from metaspend_pipeline.credentials import MetaAdAccount
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.throttle import AppPacer
from metaspend_pipeline.redaction import RedactingLogger, get_logger
from metaspend_pipeline.settings import MetaApiSettings, Settings
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.storage import db
from metaspend_pipeline.tokens import KeyRing


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse database. Without `database_url`, METASPEND_DATABASE_URL (or the embedded
    SQLite default) is read at execution time, so a password in the URL never enters run config."""

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; leave empty to read METASPEND_DATABASE_URL at run time.",
    )

    def url(self) -> str:
        return self.database_url or Settings.from_env().database_url

    def engine(self) -> sa.Engine:
        return db.migrated_engine(self.url())


class MetaAdsResource(dg.ConfigurableResource):
    """Meta's Marketing API for every connected organization, with tokens from the vault.

    Where requests go (META_GRAPH_API_URL, META_API_VERSION) is read from the environment only and
    is not a config field: a run launched with other config cannot send the tokens or the app
    secret anywhere else (see `settings.MetaApiSettings.from_env`).
    """

    warehouse: WarehouseResource
    token_encryption_key: str | None = Field(default=None, description="EnvVar META_TOKEN_ENCRYPTION_KEY")
    token_encryption_old_keys: str | None = Field(default=None, description="EnvVar META_TOKEN_ENCRYPTION_OLD_KEYS")
    app_id: str | None = Field(default=None, description="META_APP_ID; empty reads the environment")
    app_secret: str | None = Field(default=None, description="EnvVar META_APP_SECRET")
    page_size: int | None = None
    max_retries: int | None = None
    retry_base_delay_seconds: float | None = None
    retry_max_wait_seconds: float | None = None
    retry_budget_seconds: float | None = None
    async_poll_initial_seconds: float | None = None

    _settings: Settings = PrivateAttr()
    _api: MetaApiSettings = PrivateAttr()
    _keyring: KeyRing | None = PrivateAttr(default=None)
    _log: Any = PrivateAttr(default=None)
    _app_pacer: AppPacer | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        env = Settings.from_env()
        self._settings = dataclasses.replace(
            env,
            token_encryption_key=self.token_encryption_key or env.token_encryption_key,
            token_encryption_old_keys=self.token_encryption_old_keys or env.token_encryption_old_keys,
        )
        api = MetaApiSettings.from_env()
        overrides = {
            "app_id": self.app_id,
            "app_secret": self.app_secret,
            "page_size": self.page_size,
            "max_retries": self.max_retries,
            "retry_base_delay": self.retry_base_delay_seconds,
            "retry_max_wait": self.retry_max_wait_seconds,
            "retry_budget_seconds": self.retry_budget_seconds,
            "async_poll_initial": self.async_poll_initial_seconds,
        }
        self._api = dataclasses.replace(api, **{k: v for k, v in overrides.items() if v is not None})
        self._log = RedactingLogger(context.log) if context.log is not None else get_logger(__name__)
        # every client of the run consults one app-wide pacer: the app's usage is shared by all ad accounts
        self._app_pacer = AppPacer(self._api.usage_slowdown_pct, self._api.usage_window_seconds)

    @property
    def api_settings(self) -> MetaApiSettings:
        return self._api

    @property
    def log(self) -> Any:
        return self._log or get_logger(__name__)

    def keyring(self) -> KeyRing:
        if self._keyring is None:
            self._keyring = KeyRing.from_settings(self._settings)
        return self._keyring

    def engine(self) -> sa.Engine:
        return self.warehouse.engine()

    def client(self, access_token: str) -> MetaClient:
        return MetaClient(access_token, self._api, logger=self.log, app_pacer=self._app_pacer)

    def organizations(self) -> list[str]:
        """Every organization with a CONNECTED Meta account."""
        with self.engine().connect() as conn:
            organizations = store.connected_organizations(conn)
        if not organizations and self._settings.is_development and self._settings.page_access_token:
            return ["development"]
        return organizations

    def ad_accounts(self, organization_id: str) -> list[MetaAdAccount]:
        """The organization's ad accounts, each with a client holding its decrypted token."""
        with self.engine().connect() as conn:
            found = credentials.ad_account_credentials(conn, self.keyring(), organization_id, self._settings)
        return [
            MetaAdAccount(
                organization_id=c.organization_id,
                ad_account_id=c.ad_account_id,
                provider=c.provider,
                connected_account_id=c.connected_account_id,
                client=self.client(c.access_token),
            )
            for c in found
        ]

    def log_stats(self, account: MetaAdAccount) -> None:
        """One line per ad account: what fetching it cost. Never a token."""
        s = account.client.stats
        self.log.info(
            "organization %s, ad account %s: %d requests, %d pages, %d rows, %d retries, %d throttles "
            "(%.1fs waited), %.1fs paced, %.1fs paced for the app's usage, %d report runs",
            account.organization_id,
            account.ad_account_id,
            s.requests,
            s.pages,
            s.rows,
            s.retries,
            s.throttle_events,
            s.throttle_wait_seconds,
            s.pacing_wait_seconds,
            s.app_pacing_wait_seconds,
            s.async_jobs,
        )

    def mark_needs_reauth(self, connected_account_id: str | None) -> None:
        if connected_account_id is None:
            return
        with self.engine().begin() as conn:
            store.set_status(conn, connected_account_id, "NEEDS_REAUTH")


def _secret(name: str) -> dg.EnvVar | None:
    """An EnvVar (shown by name, never by value) for a secret that is set; None for one that is not."""
    return dg.EnvVar(name) if os.environ.get(name) else None


@dg.definitions
def resources() -> dg.Definitions:
    """`warehouse` and `meta`, bound when Dagster loads the code location (autoload does not collect
    resources). Secrets are EnvVars, read at run time and never shown."""
    warehouse = WarehouseResource()
    return dg.Definitions(
        resources={
            "warehouse": warehouse,
            "meta": MetaAdsResource(
                warehouse=warehouse,
                token_encryption_key=dg.EnvVar("META_TOKEN_ENCRYPTION_KEY"),
                token_encryption_old_keys=_secret("META_TOKEN_ENCRYPTION_OLD_KEYS"),
                app_secret=_secret("META_APP_SECRET"),
            ),
        }
    )
