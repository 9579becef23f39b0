"""Adversarial masking catalog through the real CLI, the real bash session and its pty.

Each ``tests/fixtures/masking/catalog/*.md`` starts with a ``<!-- catalog ... -->`` block naming the secrets
to generate (``NAME = python expression``; ``@unlisted`` ones are not written to the env file, only pasted
into the runbook as ``{{NAME}}``; ``@exit N`` is the expected exit status). For every case, no secret may
appear in any form in stdout, stderr, the transcript, the JSON report or the JUnit file. The check here is
independent of the redactor's own form list: any 12-character window of any common encoding of a value is
a leak.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import secrets
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from runbook_exec.ops.envfile import parse_env_text
from runbook_exec.secrets.masking import Redactor, classify
from runbook_exec.secrets.patterns import find_unknown_secrets

CATALOG = Path(__file__).parent / "fixtures" / "masking" / "catalog"
ROOT = Path(__file__).resolve().parents[1]
WINDOW = 12
# Terminal escapes (CSI, OSC, charset designations, two-byte) and control bytes: what a terminal hides.
ANSI = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[ -/]*[0-~]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
)


def token(n: int) -> str:
    return secrets.token_urlsafe(n)[:n]


def hexs(n: int) -> str:
    return secrets.token_hex(n)[:n]


def awkward(n: int) -> str:
    """A value with every character that shell quoting, JSON and URLs treat specially."""
    return token(n // 2) + "'$\"\\ `!&*;é" + token(n - n // 2)


def word(n: int) -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(n - 1)) + secrets.choice("23456789")


def pem() -> str:
    body = base64.b64encode(secrets.token_bytes(48 * 10)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----"


@dataclass(frozen=True)
class Case:
    path: Path
    env: dict[str, str]
    unlisted: dict[str, str]
    exit: int
    text: str


def load(path: Path) -> Case:
    text = path.read_text(encoding="utf-8")
    m = re.match(r"<!-- catalog\n(.*?)-->\n", text, re.S)
    assert m, f"{path}: no catalog block"
    env: dict[str, str] = {}
    unlisted: dict[str, str] = {}
    code = 0
    names: dict[str, object] = {"token": token, "hexs": hexs, "awkward": awkward, "word": word, "pem": pem}
    for line in m.group(1).splitlines():
        if line.startswith("@exit "):
            code = int(line.split()[1])
            continue
        target = unlisted if line.startswith("@unlisted ") else env
        key, _, expr = line.removeprefix("@unlisted ").partition(" = ")
        target[key] = names[key] = eval(expr, {}, names)  # fixture files are part of the test suite
    for key, value in {**env, **unlisted}.items():
        text = text.replace("{{" + key + "}}", value)
    return Case(path, env, unlisted, code, text)


def env_file_text(values: dict[str, str]) -> str:
    def quoted(v: str) -> str:
        if "'" not in v and "\n" not in v:
            return f"'{v}'"  # single quotes are literal
        # Double quotes: escapes for backslash, quote and newline; `$$` for a literal dollar (the module
        # drops a `\$NAME` escape, see the round-trip assertion).
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("\n", "\\n") + '"'

    return "".join(f"{k}={quoted(v)}\n" for k, v in values.items())


def _b64_cores(raw: bytes) -> list[bytes]:
    out = []
    for pad in (b"", b"\0", b"\0\0"):
        enc = base64.b64encode(pad + raw)
        skip = {0: 0, 1: 2, 2: 3}[len(pad)]
        keep = len(pad + raw) // 3 * 4  # characters fed by whole 3-byte groups only
        out += [enc[skip:keep], enc[skip:keep].translate(bytes.maketrans(b"+/", b"-_"))]
    return out


def encodings(value: str) -> list[bytes]:
    """Common printed forms of a value, computed independently of the redactor."""
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        value.replace("'", "'\\''"),
        value.replace("$", "$$"),
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        quote_plus(value).lower(),
        html.escape(value),
    }
    q = subprocess.run(["bash", "-c", 'printf %q "$V"'], env={"V": value}, capture_output=True, check=True)
    raw = [f.encode() for f in forms] + [q.stdout]
    for r in (value.encode(), value.encode() + b"\n"):
        raw += _b64_cores(r)
    return raw


def squash(data: bytes) -> bytes:
    return re.sub(rb"\s+", b"", ANSI.sub(b"", data))


def leaks(artifact: bytes, value: str) -> list[str]:
    """How ``value`` shows in ``artifact`` (descriptions, never the value)."""
    # Escapes removed (a value split by them), and only whitespace removed (a value inside an OSC body).
    flats = (squash(artifact), re.sub(rb"\s+", b"", artifact))
    found = []
    parts = [value] if "\n" not in value else [p for p in value.splitlines() if len(p) >= WINDOW]
    for part in parts:
        for i, encoded in enumerate(encodings(part)):
            form = squash(encoded)
            size = min(WINDOW, len(form))
            for pos in range(0, len(form) - size + 1):
                if any(form[pos : pos + size] in flat for flat in flats):
                    found.append(f"form #{i} window at {pos}")
                    break
    return found


def whole_word(artifact: bytes, value: str) -> bool:
    text = ANSI.sub(b"", artifact)
    return (
        re.search(rb"(?<![A-Za-z0-9_\x80-\xff])" + re.escape(value.encode()) + rb"(?![A-Za-z0-9_\x80-\xff])", text)
        is not None
    )


CASES = sorted(CATALOG.glob("*.md"))


def test_catalog_size() -> None:
    assert len(CASES) >= 24


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_catalog_case(path: Path, tmp_path: Path) -> None:
    case = load(path)
    env_file = tmp_path / "case.env"
    env_file.write_text(env_file_text(case.env), encoding="utf-8")
    assert parse_env_text(env_file.read_text(encoding="utf-8"), environ={}) == case.env
    runbook = tmp_path / path.name
    runbook.write_text(case.text, encoding="utf-8")
    out = {name: tmp_path / name for name in ("transcript.log", "report.json", "junit.xml")}
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environ["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "runbook_exec.cli", str(runbook), "--env-file", str(env_file),
         "--transcript", str(out["transcript.log"]), "--report", str(out["report.json"]),
         "--junit", str(out["junit.xml"]), "--no-release-log"],
        cwd=tmp_path, env=environ, capture_output=True, stdin=subprocess.DEVNULL, timeout=180, check=False,
    )  # fmt: skip
    artifacts = {"stdout": proc.stdout, "stderr": proc.stderr}
    artifacts |= {name: p.read_bytes() for name, p in out.items() if p.exists()}
    assert proc.returncode == case.exit, proc.stderr.decode(errors="replace")[-2000:]
    if case.exit != 2:
        assert set(artifacts) == {"stdout", "stderr", *out}, "every artifact written"
    assert b"secret leak caught" not in proc.stderr, proc.stderr.decode(errors="replace")[-2000:]

    classified = classify(case.env)
    redactor = Redactor(classified.secrets)
    problems = []
    for name, data in artifacts.items():
        for key, value in {**case.env, **case.unlisted}.items():
            if len(value) < 4 or value.lower() in ("true", "false"):
                continue  # cannot be masked: refused, or visible by design (checked below)
            if len(value) < 8:
                if whole_word(data, value):
                    problems.append(f"{name}: {key} as a whole word")
                continue
            problems += [f"{name}: {key} {how}" for how in leaks(data, value)]
        problems += [f"{name}: redactor rescan finds {key}" for key in redactor.leaks(data)]
        shaped = [n for n, (a, b) in find_unknown_secrets(data) if data[a:b] != b"***"]
        problems += [f"{name}: shape {n} unmasked" for n in shaped]
    assert problems == []
    if case.exit == 2:
        assert b"cannot be masked" in proc.stderr and not any(p.exists() for p in out.values())
