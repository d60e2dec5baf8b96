"""Scoped API keys, stored as SHA-256 hashes.

A key reads ``hwk_<key_id>_<secret>``. The secret has 256 bits of entropy, so one
SHA-256 is enough (as for GitHub tokens); slow password hashes guard guessable secrets.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy import exc as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import utcnow
from shared.contracts.events import folded_email
from shared.storage.tables import api_keys

PREFIX = "hwk"
log = logging.getLogger(__name__)


class Scope(StrEnum):
    ingest = "ingest"  # send events; reads nothing
    read = "read"  # read accounts, scores and alerts (own portfolio for a CSM key)
    respond = "respond"  # acknowledge, snooze, resolve, comment on alerts (same scoping)
    admin = "admin"  # everything, including key and model management
    metrics = "metrics"  # scrape /metrics
    crm = "crm"  # account facts and ownership (/v1/accounts, kind=account)


class Role(StrEnum):
    """Who a key is for; each role is a fixed set of scopes."""

    admin = "admin"  # everything, keys and configuration included
    cs_lead = "cs_lead"  # every account: read and act on alerts
    csm = "csm"  # their own portfolio (--csm-email): read and act on alerts
    ops = "ops"  # /metrics (and the open /healthz, /readyz)
    ingest = "ingest"  # send events; reads nothing
    crm = "crm"  # send account facts and owners (the CRM sync); reads nothing


ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.admin: frozenset({Scope.admin}),
    Role.cs_lead: frozenset({Scope.read, Scope.respond}),
    Role.csm: frozenset({Scope.read, Scope.respond}),
    Role.ops: frozenset({Scope.metrics}),
    Role.ingest: frozenset({Scope.ingest}),
    Role.crm: frozenset({Scope.crm}),
}


def role_scopes(role: Role, csm_email: str | None) -> frozenset[Scope]:
    """The scopes of ``role``; a CSM key must name its CSM, and only a CSM key may."""
    if role == Role.csm and csm_email is None:
        raise ValueError(
            "a csm key needs csm_email (--csm-email on the command line): the CSM "
            "whose portfolio it sees"
        )
    if role != Role.csm and csm_email is not None:
        raise ValueError(
            f"only a csm key takes csm_email (a {role.value} key sees every account): "
            "leave it out, or give the key the role csm"
        )
    return ROLE_SCOPES[role]


def raw_scopes(scopes: Iterable[Scope], csm_email: str | None) -> frozenset[Scope]:
    """Scopes given one by one (special cases), checked as a role's are: a key that acts
    on alerts and accounts must see them, and an admin key sees every account."""
    granted = frozenset(scopes)
    if Scope.respond in granted and not granted & {Scope.read, Scope.admin}:
        raise ValueError(
            "a key with the respond scope needs read too: it acts on what it sees "
            "(add --scope read, or give it the role csm or cs_lead)"
        )
    if Scope.admin in granted and csm_email is not None:
        raise ValueError(
            "an admin key sees every account: leave csm_email out, or give the key the role csm"
        )
    return granted


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: frozenset[Scope]
    csm_email: str | None = None

    def allows(self, scope: Scope) -> bool:
        if Scope.admin in self.scopes:
            return True
        # Acting needs seeing: a respond key made without read (before keys were checked
        # so, ``raw_scopes``) would act on every account, as a lead's key does.
        if scope is Scope.respond and Scope.read not in self.scopes:
            return False
        return scope in self.scopes

    @property
    def portfolio_of(self) -> str | None:
        """The CSM whose accounts alone this key sees; None: every account."""
        return None if Scope.admin in self.scopes else self.csm_email


def same_secret(given: str, expected: str) -> bool:
    """Constant-time equality of a secret, signature or token sent from outside with
    the expected one; non-ASCII input (a forged header's or form's) is simply unequal,
    where ``hmac.compare_digest`` of two strings raises."""
    return hmac.compare_digest(given.encode(), expected.encode())


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
                # Folded as the accounts' owner emails are, or the portfolio is empty.
                csm_email=folded_email(csm_email),
                created_at=utcnow(),
            )
        )
    return f"{PREFIX}_{key_id}_{secret}"


class KeysUnavailable(Exception):
    """The key table cannot be read and the key was not verified recently enough."""


# Errors meaning the database is down, restarting or unreachable (not a bad key).
DB_DOWN: tuple[type[BaseException], ...] = (
    sa.DBAPIError,
    sa.DisconnectionError,
    sa.TimeoutError,
    OSError,
    TimeoutError,
)
_Cache = OrderedDict[str, tuple[float, ApiKey]]


class KeyStore:
    """Verifies keys and finds them by id, caching hits briefly so a request costs no
    database round trip, and riding out a database outage on recent verifications."""

    # A revoked key keeps working for at most this long; a minute bounds the
    # exposure while sparing the database one query per request.
    CACHE_TTL_S = 60.0
    # While the database is down, a key verified within the last hour still works:
    # revoking needs the database too, so the only exposure is a revocation made in the
    # TTL before the outage; an hour rides out a failover or a maintenance window.
    STALE_GRACE_S = 3600.0
    # Bounded memory whatever callers send (only verified keys are cached): far more
    # keys than any deployment has, at a few hundred bytes each.
    CACHE_SIZE = 10_000
    # A database that hangs (paused, partitioned) rather than refusing: a key check waits
    # at most this long, then answers from the cache or with a 503, not a hung request.
    LOOKUP_TIMEOUT_S = 5.0

    def __init__(self, engine: AsyncEngine):
        self._engine = engine
        self._cache: _Cache = OrderedDict()
        self._by_id: _Cache = OrderedDict()

    async def verify(self, raw: str) -> ApiKey | None:
        """The key, None if unknown or revoked; raises KeysUnavailable when the database
        is down and the key was not verified within ``STALE_GRACE_S``."""
        parsed = split_key(raw)
        if parsed is None:
            return None
        key_id, secret = parsed

        async def load() -> ApiKey | None:
            row = await self._unrevoked(key_id)
            if row is None or not hmac.compare_digest(row.secret_hash, hash_secret(secret)):
                return None
            return _api_key(row)

        return await self._cached(self._cache, hash_secret(raw), load)

    async def lookup(self, key_id: str) -> ApiKey | None:
        """The unrevoked key with this id, for a caller that proved it earlier (a signed
        dashboard session); cached like ``verify``, so a revocation applies within
        ``CACHE_TTL_S``."""

        async def load() -> ApiKey | None:
            row = await self._unrevoked(key_id)
            return None if row is None else _api_key(row)

        return await self._cached(self._by_id, key_id, load)

    async def _cached(
        self, cache: _Cache, name: str, load: Callable[[], Awaitable[ApiKey | None]]
    ) -> ApiKey | None:
        now = time.monotonic()
        hit = cache.get(name)
        if hit is not None and now - hit[0] < self.CACHE_TTL_S:
            return hit[1]
        try:
            async with asyncio.timeout(self.LOOKUP_TIMEOUT_S):
                key = await load()
        except DB_DOWN as exc:
            if hit is not None and now - hit[0] < self.STALE_GRACE_S:
                return hit[1]
            log.warning("cannot verify an API key, the database is unavailable: %r", exc)
            raise KeysUnavailable(f"the key store is unavailable ({type(exc).__name__})") from exc
        if key is None:
            cache.pop(name, None)
            return None
        cache[name] = (now, key)
        cache.move_to_end(name)
        while len(cache) > self.CACHE_SIZE:
            cache.popitem(last=False)
        return key

    def holds_recent(self) -> bool:
        """Whether a key verified within ``STALE_GRACE_S`` is held: what this process can
        go on accepting while the database is down."""
        now = time.monotonic()
        return any(now - at < self.STALE_GRACE_S for at, _ in self._cache.values())

    def forget(self, key_id: str) -> None:
        """Drop a key from this process's caches (it was just revoked here): the process
        that revokes refuses the key at once; others within ``CACHE_TTL_S``."""
        self._by_id.pop(key_id, None)
        for name in [n for n, (_, key) in self._cache.items() if key.key_id == key_id]:
            del self._cache[name]

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


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: everything but its secret (and its hash)."""

    key_id: str
    name: str
    scopes: frozenset[Scope]
    csm_email: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def role(self) -> Role | None:
        """The role whose scopes the key holds (None: a key made of raw scopes)."""
        for role, scopes in ROLE_SCOPES.items():
            if scopes == self.scopes and (role == Role.csm) == (self.csm_email is not None):
                return role
        return None


async def list_keys(engine: AsyncEngine, key_id: str | None = None) -> list[KeyInfo]:
    """Every key (or the one with ``key_id``), revoked ones included, oldest first."""
    query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
    if key_id is not None:
        query = query.where(api_keys.c.key_id == key_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        KeyInfo(
            key_id=r.key_id,
            name=r.name,
            scopes=_api_key(r).scopes,
            csm_email=r.csm_email,
            created_at=r.created_at,
            revoked_at=r.revoked_at,
        )
        for r in rows
    ]


async def revoke_key(engine: AsyncEngine, key_id: str) -> datetime | None:
    """Revoke the key (idempotent) and return when it was revoked; None if there is no
    such key. Processes that verified it recently still accept it for up to
    ``KeyStore.CACHE_TTL_S``."""
    t = api_keys
    async with engine.begin() as conn:
        await conn.execute(
            t.update()
            .where(t.c.key_id == key_id, t.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        row = (await conn.execute(select(t.c.revoked_at).where(t.c.key_id == key_id))).first()
    return None if row is None else row.revoked_at
