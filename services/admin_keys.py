"""Admin API for API keys: list them, create one (its secret is shown once), revoke one.

Admin keys only. A revoked key stops working everywhere within
``KeyStore.CACHE_TTL_S`` (processes cache a verified key that long).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.auth import (
    KeyInfo,
    KeyStore,
    Role,
    Scope,
    create_key,
    list_keys,
    raw_scopes,
    revoke_key,
    role_scopes,
)
from shared.openapi import error_responses
from shared.web import AdminKey, ClientError, EngineDep

router = APIRouter(prefix="/v1", tags=["keys"])


def printable(value: str | None) -> str | None:
    """Text fit for logs, terminals and the database: no control character, no lone
    surrogate (which JSON's \\ud800 escape can carry)."""
    if value is None:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError("no control characters (tabs, line breaks…) or lone surrogates")
    return value


Printable = AfterValidator(printable)


class KeyCreate(BaseModel):
    """A role (with ``csm_email`` for a CSM), or raw scopes for special cases."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "Li Na", "role": "csm", "csm_email": "li.na@example.com"},
                {"name": "crm-sync", "role": "crm"},
            ]
        }
    )
    name: Annotated[str, Field(min_length=1, max_length=200), Printable]
    role: Role | None = None
    scopes: list[Scope] | None = None
    csm_email: Annotated[
        str | None, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"), Printable
    ] = None

    @model_validator(mode="after")
    def _role_or_scopes(self) -> KeyCreate:
        if (self.role is None) == (not self.scopes):
            raise ValueError("give a role, or (for special cases) scopes, not both")
        self.granted()  # a csm key needs csm_email, others none; respond needs read
        return self

    def granted(self) -> frozenset[Scope]:
        if self.role is not None:
            return role_scopes(self.role, self.csm_email)
        return raw_scopes(self.scopes or [], self.csm_email)


class KeyPublic(BaseModel):
    """A key as listed: never its secret."""

    key_id: str
    name: str
    role: Role | None
    scopes: list[Scope]
    csm_email: str | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, info: KeyInfo) -> KeyPublic:
        return cls(
            key_id=info.key_id,
            name=info.name,
            role=info.role,
            scopes=sorted(info.scopes),
            csm_email=info.csm_email,
            created_at=info.created_at,
            revoked_at=info.revoked_at,
        )


class KeysPublic(BaseModel):
    keys: list[KeyPublic]


class KeyCreated(KeyPublic):
    key: str = Field(description="The whole key: shown this once, stored only hashed")


@router.get("/keys", response_model=KeysPublic)
async def keys(engine: EngineDep, _admin: AdminKey) -> KeysPublic:
    """Every key, revoked ones included, oldest first."""
    return KeysPublic(keys=[KeyPublic.of(k) for k in await list_keys(engine)])


@router.post("/keys", response_model=KeyCreated, status_code=201)
async def new_key(
    body: KeyCreate, response: Response, engine: EngineDep, _admin: AdminKey
) -> KeyCreated:
    """Create a key; the answer holds its secret, which is never shown again (nor kept
    by a cache on the way: ``no-store``)."""
    response.headers["Cache-Control"] = "no-store"
    raw = await create_key(engine, body.name, body.granted(), body.csm_email)
    (info,) = await list_keys(engine, raw.split("_", 2)[1])
    return KeyCreated(**KeyPublic.of(info).model_dump(), key=raw)


@router.delete("/keys/{key_id}", response_model=KeyPublic, responses=error_responses(404))
async def revoke(key_id: str, request: Request, engine: EngineDep, _admin: AdminKey) -> KeyPublic:
    """Revoke a key (again: no change). It stops working at once on this process and
    within a minute on every other."""
    if await revoke_key(engine, key_id) is None:
        raise ClientError(
            404,
            "not_found",
            "No key {key_id!r}: GET /v1/keys lists them.",
            values={"key_id": key_id},
        )
    keys: KeyStore = request.app.state.keys
    keys.forget(key_id)
    (info,) = await list_keys(engine, key_id)
    return KeyPublic.of(info)
