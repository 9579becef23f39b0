"""Adversarial masking catalog through the real CLI, the real bash session and its pty.

Each ``tests/fixtures/masking/catalog/*.md`` starts with a ``<!-- catalog ... -->`` block naming the secrets
to generate (``NAME = python expression``; ``@unlisted`` ones are not written to the env file, only pasted
into the runbook as ``{{NAME}}``; ``@old`` ones are written to the env file before the key's own line, as a
value left in while rotating; ``@inherited`` ones are set in the runner's environment, not in the env file;
``@exit N`` is the expected exit status; ``@expect TEXT`` a text the terminal output must still show, so a
case that must not over-mask says what stays). For every case, no secret may appear in any form in the five
sinks (terminal stdout, the transcript, the JSON report, the JUnit file, the release.log record) or stderr,
and the reports stay valid JSON and XML. The check here is independent of the redactor's own form list: any
12-character window of any common encoding of a value is a leak.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import secrets
import shlex
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape as xml_escape

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
    old: dict[str, str]
    inherited: dict[str, str]
    expect: tuple[str, ...]

    def values(self) -> dict[str, str]:
        """Every value that must not show, under a name for the failure message."""
        old = {f"{k} (old)": v for k, v in self.old.items()}
        return {**self.env, **self.unlisted, **old, **self.inherited}


def load(path: Path) -> Case:
    text = path.read_text(encoding="utf-8")
    m = re.match(r"<!-- catalog\n(.*?)-->\n", text, re.S)
    assert m, f"{path}: no catalog block"
    env: dict[str, str] = {}
    kinds: dict[str, dict[str, str]] = {"@unlisted": {}, "@old": {}, "@inherited": {}}
    expect: list[str] = []
    code = 0
    names: dict[str, object] = {"token": token, "hexs": hexs, "awkward": awkward, "word": word, "pem": pem}
    names |= {"base64": base64, "secrets": secrets}
    for line in m.group(1).splitlines():
        if line.startswith("@exit "):
            code = int(line.split()[1])
            continue
        if line.startswith("@expect "):
            expect.append(line.removeprefix("@expect "))
            continue
        kind, _, rest = line.partition(" ") if line.startswith("@") else ("", "", line)
        target = kinds[kind] if kind else env
        key, _, expr = rest.partition(" = ")
        target[key] = eval(expr, {}, names)  # fixture files are part of the test suite
        names[key if kind != "@old" else f"{key}_OLD"] = target[key]
    unlisted = kinds["@unlisted"]
    old = {f"{key}_OLD": value for key, value in kinds["@old"].items()}
    for key, value in {**env, **unlisted, **kinds["@inherited"], **old}.items():
        text = text.replace("{{" + key + "}}", value)
    return Case(path, env, unlisted, code, text, kinds["@old"], kinds["@inherited"], tuple(expect))


def env_file_text(values: dict[str, str]) -> str:
    def quoted(v: str) -> str:
        if "'" not in v and "\n" not in v:
            return f"'{v}'"  # single quotes are literal
        # Double quotes: escapes for backslash, quote and newline; `$$` for a literal dollar (the module
        # drops a `\$NAME` escape, see the round-trip assertion).
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("\n", "\\n") + '"'

    return "".join(f"{k}={quoted(v)}\n" for k, v in values.items())


def env_file_with_old(values: dict[str, str], old: dict[str, str]) -> str:
    """The env file, each ``old`` value on a line of its own before the key's current one."""
    return "".join((env_file_text({k: old[k]}) if k in old else "") + env_file_text({k: v}) for k, v in values.items())


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
    forms |= {
        value.replace("'", "''"),  # YAML single-quoted
        shlex.quote(value),
        xml_escape(value, {"'": "&apos;", '"': "&quot;"}),
        xml_escape(value, {"'": "&#39;", '"': "&#34;"}),
        value.encode("unicode_escape").decode(),  # backslash escapes: \\ \t \n
        value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$"),  # an env file, double-quoted
        value.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"'),
    }
    q = subprocess.run(["bash", "-c", 'printf %q "$V"'], env={"V": value}, capture_output=True, check=True)
    raw = [f.encode() for f in forms] + [q.stdout]
    data = value.encode()
    raw += [data.hex().encode(), data.hex().upper().encode()]  # xxd -p, od -tx1
    raw += [base64.b64encode(data[1:]), base64.b64encode(data[2:])]  # base64 of the value without its start
    for r in (data, data + b"\n"):
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
    env_file.write_text(env_file_with_old(case.env, case.old), encoding="utf-8")
    assert parse_env_text(env_file.read_text(encoding="utf-8"), environ={}) == case.env
    runbook = tmp_path / path.name
    runbook.write_text(case.text, encoding="utf-8")
    names = ("transcript.log", "report.json", "junit.xml", "release.log")
    out = {name: tmp_path / name for name in names}
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environ["PYTHONPATH"] = str(ROOT)
    environ |= case.inherited
    proc = subprocess.run(
        [sys.executable, "-m", "runbook_exec.cli", str(runbook), "--env-file", str(env_file),
         "--transcript", str(out["transcript.log"]), "--report", str(out["report.json"]),
         "--junit", str(out["junit.xml"]), "--release-log", str(out["release.log"])],
        cwd=tmp_path, env=environ, capture_output=True, stdin=subprocess.DEVNULL, timeout=180, check=False,
    )  # fmt: skip
    artifacts = {"stdout": proc.stdout, "stderr": proc.stderr}
    artifacts |= {name: p.read_bytes() for name, p in out.items() if p.exists()}
    assert proc.returncode == case.exit, proc.stderr.decode(errors="replace")[-2000:]
    if case.exit != 2:
        assert set(artifacts) == {"stdout", "stderr", *out}, "every artifact written"
        json.loads(artifacts["report.json"])  # intact: the rescan redacts inside values
        ET.fromstring(artifacts["junit.xml"])
    assert b"secret leak caught" not in proc.stderr, proc.stderr.decode(errors="replace")[-2000:]
    shown = proc.stdout.decode(errors="replace")
    assert [e for e in case.expect if e not in shown] == [], shown[-2000:]

    classified = classify(case.env)
    redactor = Redactor(classified.secrets)
    problems = []
    for name, data in artifacts.items():
        for key, value in case.values().items():
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
