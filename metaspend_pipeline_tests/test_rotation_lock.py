"""`keys rotate` against a token refresh committing at the same time, on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from metaspend_pipeline import credentials
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.storage import db
from metaspend_pipeline.tokens import KeyRing, generate_key, parse_key
from metaspend_pipeline_tests.conftest import _fresh_postgres


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    yield from _fresh_postgres(postgres_template)


def _blocked_on_a_lock(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE oauth_token%'"
                )
            ).scalar_one()
        )


@pytest.mark.postgres
def test_a_refresh_committed_during_rotation_is_not_overwritten(postgres_url: str) -> None:
    engine = db.engine_for(postgres_url)
    old_key, new_key = generate_key(), generate_key()
    old_ring = KeyRing(parse_key(old_key, "old"))
    new_ring = KeyRing(parse_key(new_key, "new"), (parse_key(old_key, "old"),))
    with engine.begin() as conn:
        account = credentials.store_connection(conn, old_ring, "acme", "FACEBOOK", ["act_1"], "EAAold" + "1" * 30, None)
        token_id = store.stored_tokens(conn)[0].token_id
    refreshed = "EAArefreshed" + "2" * 30
    expires = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    refresh_done = threading.Event()
    errors: list[BaseException] = []

    def refresh() -> None:
        """What `refresh_tokens` writes, with the new key, in its own transaction."""
        try:
            with engine.begin() as conn:
                store.update_token(conn, token_id, new_ring.encrypt(refreshed, account), expires, refreshed=True)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            refresh_done.set()

    class RingThatLetsTheRefreshIn(KeyRing):
        """Between rotation's read and its write (rotation decrypts what it read), the refresh runs
        and the rotation waits until it has either committed or is blocked on the row lock."""

        def decrypt(self, stored: str, connected_account_id: str) -> str:
            thread.start()
            deadline = time.monotonic() + 20
            while not refresh_done.is_set() and not _blocked_on_a_lock(engine):
                assert time.monotonic() < deadline, "the refresh neither committed nor waited"
                time.sleep(0.02)
            return super().decrypt(stored, connected_account_id)

    thread = threading.Thread(target=refresh)
    rotating = RingThatLetsTheRefreshIn(new_ring.current, new_ring.old)
    with engine.begin() as conn:
        report = credentials.rotate_keys(conn, rotating)
        assert not refresh_done.is_set()  # the refresh waits for the rotation's lock
    thread.join(timeout=20)
    assert refresh_done.is_set() and not errors
    assert report.reencrypted == 1
    with engine.connect() as conn:
        (token,) = store.stored_tokens(conn)
    assert new_ring.decrypt(token.access_token_encrypted, account) == refreshed
    assert not new_ring.needs_rotation(token.access_token_encrypted)  # encrypted with the new key
    assert token.expires_at == expires
