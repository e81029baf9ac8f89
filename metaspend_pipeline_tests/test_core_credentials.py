"""`credentials.py` beyond test_credentials.py: a token that expires at the very instant it is
stored is already expired, as the lookup rule (`expires_at > now`) has it."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from metaspend_pipeline import credentials
from metaspend_pipeline.errors import InvalidInputError
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline_tests.test_credentials import connect


def test_an_expiry_at_this_very_instant_is_refused_and_a_microsecond_later_is_stored(
    engine: sa.Engine, encryption_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    monkeypatch.setattr(credentials, "utcnow", lambda: now)
    with pytest.raises(InvalidInputError) as info:
        connect(engine, encryption_key, "org-1", "EAAnow0000000", ["act_1"], expires_at=now)
    assert str(info.value) == f"the token's expiry {now.isoformat()} is in the past"
    later = now + dt.timedelta(microseconds=1)
    connect(engine, encryption_key, "org-1", "EAAlater00000", ["act_1"], expires_at=later)
    with engine.connect() as conn:
        [token] = store.stored_tokens(conn, "org-1")
    assert token.expires_at == later
    assert (token.is_valid_at(now), token.is_valid_at(later)) == (True, False)
