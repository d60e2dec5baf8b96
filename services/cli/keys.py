"""``healthwatch keys``: create, list and revoke API keys."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import Annotated

import orjson
import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_keys import printable
from services.cli.base import console, keys_app, on_database
from services.cli.logs import escape_controls
from services.cli.text import t
from shared.auth import (
    KeyInfo,
    Role,
    Scope,
    create_key,
    list_keys,
    raw_scopes,
    revoke_key,
    role_scopes,
)
from shared.config import Settings
from shared.contracts.events import Email


@keys_app.command("create")
def keys_create(
    role: Annotated[
        Role | None,
        typer.Option(help="admin, cs_lead, csm (with --csm-email), ops, ingest or crm"),
    ] = None,
    scope: Annotated[
        list[Scope] | None,
        typer.Option(help="Or raw scope(s): ingest, crm, read, respond, admin, metrics"),
    ] = None,
    name: Annotated[str, typer.Option(help="What the key is for")] = "unnamed",
    csm_email: Annotated[
        str | None, typer.Option(help="Limit the key to this CSM's portfolio")
    ] = None,
) -> None:
    """Create an API key and print it (it is stored hashed: this is the only copy)."""
    settings = Settings()
    if (role is None) == (not scope):
        raise typer.BadParameter(t("give a --role (or, for special cases, --scope …), not both"))
    try:
        scopes = (
            role_scopes(role, csm_email) if role is not None else raw_scopes(scope or [], csm_email)
        )
        printable(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if csm_email is not None:
        try:  # a key for "not-an-email" would see no account, silently
            csm_email = TypeAdapter(Email).validate_python(csm_email)
        except ValidationError:
            raise typer.BadParameter(
                t("--csm-email {email!r} is not an email", email=csm_email)
            ) from None

    async def create(engine: AsyncEngine) -> str:
        return await create_key(engine, name, scopes, csm_email)

    key = asyncio.run(on_database(settings, create))
    print(key)
    what = (
        t("role {role}", role=role.value)
        if role
        else t("scopes {scopes}", scopes=", ".join(sorted(s.value for s in scopes)))
    )
    console.print(t("[green]created[/] key {name} with {what}", name=escape(repr(name)), what=what))


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per key")] = False,
) -> None:
    """List every key (revoked ones too): id, name, role or scopes, CSM, dates. Never the
    secret, which is not stored."""
    keys = asyncio.run(on_database(Settings(), list_keys))
    if as_json:
        for k in keys:
            print(orjson.dumps(_key_row(k)).decode())
        return
    table = Table("id", "name", "role / scopes", "csm", "created", "revoked", box=None)
    for k in keys:
        row = _key_row(k)
        table.add_row(*(Text(escape_controls(str(row[c] or ""))) for c in row if c != "scopes"))
    # Piped output has no terminal width to fit: keep every column whole.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    console.print(t("{n} key(s); revoke one with 'healthwatch keys revoke KEY_ID'", n=len(keys)))


def _key_row(k: KeyInfo) -> dict[str, str | None]:
    scopes = ",".join(sorted(s.value for s in k.scopes))
    return {
        "key_id": k.key_id,
        "name": k.name,
        "role": k.role.value if k.role else f"scopes: {scopes}",
        "csm_email": k.csm_email,
        "created_at": k.created_at.isoformat(timespec="seconds"),
        "revoked_at": k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else None,
        "scopes": scopes,
    }


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (keys list)")]) -> None:
    """Revoke a key: every service refuses it within a minute (their key caches)."""

    async def revoke(engine: AsyncEngine) -> tuple[datetime | None, bool]:
        before = await list_keys(engine, key_id)
        already = bool(before) and before[0].revoked_at is not None
        return await revoke_key(engine, key_id), already

    when, already = asyncio.run(on_database(Settings(), revoke))
    if when is None:
        console.print(
            t("[red]no key {key_id}[/]: 'healthwatch keys list' shows the ids", key_id=repr(key_id))
        )
        raise typer.Exit(1)
    at = when.isoformat(timespec="seconds")
    if already:  # it printed "revoked" again, as if just now
        console.print(t("key {key_id} was revoked already, at {at}", key_id=key_id, at=at))
        return
    console.print(t("[green]revoked[/] key {key_id} at {at}", key_id=key_id, at=at))
