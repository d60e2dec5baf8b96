"""Scoped API keys, stored as SHA-256 hashes.

A key reads ``hwk_<key_id>_<secret>``. The secret has 256 bits of entropy, so one
SHA-256 is enough (as for GitHub tokens); slow password hashes guard guessable secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import utcnow
from shared.storage.tables import api_keys

PREFIX = "hwk"


class Scope(StrEnum):
    ingest = "ingest"  # send events; reads nothing
    read = "read"  # read accounts, scores and alerts (own portfolio for a CSM key)
    respond = "respond"  # acknowledge, snooze, resolve, comment on alerts (same scoping)
    admin = "admin"  # everything, including key and model management
    metrics = "metrics"  # scrape /metrics


class Role(StrEnum):
    """Who a key is for; each role is a fixed set of scopes."""

    admin = "admin"  # everything, keys and configuration included
    cs_lead = "cs_lead"  # every account: read and act on alerts
    csm = "csm"  # their own portfolio (--csm-email): read and act on alerts
    ops = "ops"  # /metrics (and the open /healthz, /readyz)
    ingest = "ingest"  # send events; reads nothing


ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.admin: frozenset({Scope.admin}),
    Role.cs_lead: frozenset({Scope.read, Scope.respond}),
    Role.csm: frozenset({Scope.read, Scope.respond}),
    Role.ops: frozenset({Scope.metrics}),
    Role.ingest: frozenset({Scope.ingest}),
}


def role_scopes(role: Role, csm_email: str | None) -> frozenset[Scope]:
    """The scopes of ``role``; a CSM key must name its CSM, and only a CSM key may."""
    if (role == Role.csm) != (csm_email is not None):
        raise ValueError(
            "a csm key needs --csm-email (the CSM whose portfolio it sees), "
            "and only a csm key takes one"
        )
    return ROLE_SCOPES[role]


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: frozenset[Scope]
    csm_email: str | None = None

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.admin in self.scopes

    @property
    def portfolio_of(self) -> str | None:
        """The CSM whose accounts alone this key sees; None: every account."""
        return None if Scope.admin in self.scopes else self.csm_email


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(raw: str) -> tuple[str, str] | None:
    parts = raw.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


async def create_key(
    engine: AsyncEngine, name: str, scopes: Iterable[Scope], csm_email: str | None = None
) -> str:
    """Store a new key and return it in clear text: the only time it is ever shown."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    async with engine.begin() as conn:
        await conn.execute(
            api_keys.insert().values(
                key_id=key_id,
                name=name,
                secret_hash=hash_secret(secret),
                scopes=",".join(sorted(Scope(s).value for s in scopes)),
                csm_email=csm_email,
                created_at=utcnow(),
            )
        )
    return f"{PREFIX}_{key_id}_{secret}"


class KeyStore:
    """Verifies keys and finds them by id, caching hits briefly so a request costs no
    database round trip."""

    # A revoked key keeps working for at most this long; a minute bounds the
    # exposure while sparing the database one query per request.
    CACHE_TTL_S = 60.0

    def __init__(self, engine: AsyncEngine):
        self._engine = engine
        self._cache: dict[str, tuple[float, ApiKey]] = {}
        self._by_id: dict[str, tuple[float, ApiKey]] = {}

    async def verify(self, raw: str) -> ApiKey | None:
        parsed = split_key(raw)
        if parsed is None:
            return None
        key_id, secret = parsed
        cache_key = hash_secret(raw)
        hit = self._cache.get(cache_key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self._unrevoked(key_id)
        key: ApiKey | None = None
        if row is not None and hmac.compare_digest(row.secret_hash, hash_secret(secret)):
            key = _api_key(row)
            self._cache[cache_key] = (now + self.CACHE_TTL_S, key)
        return key

    async def lookup(self, key_id: str) -> ApiKey | None:
        """The unrevoked key with this id, for a caller that proved it earlier (a signed
        dashboard session); cached like ``verify``, so a revocation applies within
        ``CACHE_TTL_S``."""
        hit = self._by_id.get(key_id)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self._unrevoked(key_id)
        if row is None:
            return None
        key = _api_key(row)
        self._by_id[key_id] = (now + self.CACHE_TTL_S, key)
        return key

    async def _unrevoked(self, key_id: str) -> Row[Any] | None:
        async with self._engine.connect() as conn:
            query = select(api_keys).where(
                api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None)
            )
            return (await conn.execute(query)).first()


def _api_key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        name=row.name,
        scopes=frozenset(Scope(s) for s in row.scopes.split(",") if s),
        csm_email=row.csm_email,
    )
