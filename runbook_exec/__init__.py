"""runbook-exec: run, publish and lint Markdown runbooks."""

from __future__ import annotations

__version__ = "0.1.0"
