"""Epoch seconds as readers of the report and of the held-out reasons expect them:
UTC, ISO 8601, independent of the machine's time zone (tracked outputs must not vary
with where they were made)."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_iso(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(int(epoch_seconds), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
