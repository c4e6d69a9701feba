"""The embedded demo project: models, syncs and a sample-data generator."""

from __future__ import annotations

from pathlib import Path

DEMO_PROJECT_DIR = Path(__file__).resolve().parent
