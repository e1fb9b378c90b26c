"""Placeholder: the model commands (train, evaluate, models, compare-models) are being written."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
