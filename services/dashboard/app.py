"""The web dashboard (server-rendered pages under /ui), mounted on the API app."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.config import Settings


def mount_dashboard(app: FastAPI, engine: AsyncEngine, settings: Settings) -> None:
    """Add the dashboard's routes to ``app`` (which has ``state.keys``)."""
