"""Secret masking: the only path from the shell (or any value) to any sink.

Interface used by the rest of the package:

* :class:`Redactor` built from :class:`Secret` values;
* ``Redactor.stream()`` gives a :class:`MaskStream` whose ``feed(bytes) -> bytes`` / ``flush() -> bytes``
  mask a byte stream exactly across arbitrary chunk boundaries;
* ``Redactor.mask(str)`` / ``mask_bytes(bytes)`` mask a finished text;
* ``Redactor.leaks(bytes)`` names the keys whose values (in any form) still appear (final rescan);
* :func:`classify` decides which environment values are secrets and which cannot be masked.

This first version masks exact occurrences only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MARKER = b"***"
SECRET_NAME = re.compile(r"(?i)(^|_)(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|KEY)$")


@dataclass(frozen=True)
class Secret:
    """One value to mask, with the name it came from (names are shown, values never)."""

    key: str
    value: str


@dataclass(frozen=True)
class Classification:
    """Which values are masked, and what the operator must be told."""

    secrets: tuple[Secret, ...]
    warnings: tuple[str, ...]
    refused: tuple[str, ...]  # keys whose names mark them secret but whose values are too short to mask


def is_secret_name(key: str) -> bool:
    """True for names such as ``*_PASSWORD``, ``*_SECRET``, ``*_TOKEN``, ``*_API_KEY``, ``*_KEY``."""
    return bool(SECRET_NAME.search(key))


def classify(
    values: Mapping[str, str], *, declared_secret: Iterable[str] = (), allow_short: bool = False
) -> Classification:
    """Decide how each value is masked. Every value given here is treated as a secret."""
    declared = set(declared_secret)
    secrets: list[Secret] = []
    warnings: list[str] = []
    refused: list[str] = []
    for key, value in values.items():
        if value == "":
            continue
        marked = key in declared or is_secret_name(key)
        if len(value) < 4 or value.lower() in ("true", "false"):
            if marked and not allow_short:
                refused.append(key)
            else:
                warnings.append(f"{key}: value too short to mask safely; it stays visible in output")
            continue
        if len(value) < 8:
            warnings.append(f"{key}: value has {len(value)} characters; masked only as a whole word")
        secrets.append(Secret(key, value))
    return Classification(tuple(secrets), tuple(warnings), tuple(refused))


class MaskStream:
    """Masks one byte stream; holds back only bytes that may still start a secret."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        buf = self._held + data
        keep = self._redactor.holdback(buf)
        masked, tail = self._redactor.mask_bytes(buf[: len(buf) - keep], final=False), buf[len(buf) - keep :]
        self._held = tail
        return masked

    def flush(self) -> bytes:
        out = self._redactor.mask_bytes(self._held)
        self._held = b""
        return out


class Redactor:
    """Masks every occurrence of every secret value as ``***``."""

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        self.secrets = tuple(s for s in secrets if s.value)
        self._needles = sorted({s.value.encode() for s in self.secrets}, key=len, reverse=True)
        self._maxlen = max((len(n) for n in self._needles), default=0)

    def stream(self) -> MaskStream:
        return MaskStream(self)

    def holdback(self, buf: bytes) -> int:
        """How many trailing bytes of ``buf`` could still be the start of a secret."""
        limit = min(len(buf), self._maxlen - 1)
        for k in range(limit, 0, -1):
            tail = buf[-k:]
            if any(n.startswith(tail) for n in self._needles):
                return k
        return 0

    def mask_bytes(self, data: bytes, final: bool = True) -> bytes:
        for needle in self._needles:
            data = data.replace(needle, MARKER)
        return data

    def mask(self, text: str) -> str:
        return self.mask_bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")

    def leaks(self, data: bytes) -> list[str]:
        """Keys whose value still occurs in ``data``."""
        return sorted({s.key for s in self.secrets if s.value.encode() in data})
