"""What the app was created with: the settings and the registry (see create_app)."""

from __future__ import annotations

from flask import current_app

from edge_mm.config import Settings
from edge_mm.runtime.registry import Registry
from edge_mm.tasks.payload import Limits


def registry() -> Registry:
    return current_app.extensions["edge_mm"]["registry"]


def settings() -> Settings:
    return current_app.extensions["edge_mm"]["settings"]


def limits() -> Limits:
    return current_app.extensions["edge_mm"]["limits"]
