"""Which run owns which organizations when META_SPEND_SHARDS splits a tick into N runs.

An organization belongs to shard sha256(organization_id) mod N: stable across processes and
machines (Python's own `hash()` of a string changes with every process), and the same for every
run of the same N, so each shard's runs always see the same organizations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from metaspend_pipeline.errors import InvalidInputError

SHARD_TAG = "metaspend/shard"


def shard_index(organization_id: str, count: int) -> int:
    """The shard (0 .. count-1) that owns the organization."""
    digest = hashlib.sha256(organization_id.encode("utf-8")).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`, written "index/count" in tags and run config."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, slash, count = text.strip().partition("/")
        if not (slash and index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
            raise InvalidInputError(
                f"shard {text!r} is not of the form i/N with 0 <= i < N (e.g. 0/4); "
                f"set it as the run tag {SHARD_TAG} or the run config `shard`"
            )
        return cls(int(index), int(count))

    def owns(self, organization_id: str) -> bool:
        return shard_index(organization_id, self.count) == self.index

    def select(self, organizations: Iterable[str]) -> list[str]:
        return [o for o in organizations if self.owns(o)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def all_shards(count: int) -> list[Shard]:
    return [Shard(i, count) for i in range(count)]
