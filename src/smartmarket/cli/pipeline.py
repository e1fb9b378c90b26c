"""Placeholder: the pipeline commands (run, worker, events, replay) are being written."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
