"""Dagster-facing configuration: the warehouse and (later) Meta resources."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import db


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
