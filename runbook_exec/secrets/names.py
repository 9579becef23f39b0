"""Names that mark a value as secret (``*_PASSWORD``, ``*_TOKEN``, ...): one rule for the runner's masking
and for ``runbook-exec check``, which needs it without the masking engines."""

from __future__ import annotations

import re

SECRET_NAME = re.compile(r"(?i)(^|_)(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|KEY)$")


def is_secret_name(key: str) -> bool:
    """True for names such as ``*_PASSWORD``, ``*_SECRET``, ``*_TOKEN``, ``*_API_KEY``, ``*_KEY``."""
    return bool(SECRET_NAME.search(key))
