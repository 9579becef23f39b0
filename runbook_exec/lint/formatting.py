"""Output formats of ``runbook-exec check``: text, JSON, GitHub annotations, GitLab Code Quality."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from runbook_exec.lint.findings import ERROR, NOTICE, WARNING, Finding

FORMATS = ("text", "json", "github", "gitlab")


def render(findings: Sequence[Finding], notices: Sequence[str], fmt: str) -> str:
    """The report for ``findings`` in format ``fmt`` (without a trailing newline when empty)."""
    if fmt == "json":
        return json.dumps(
            {
                "findings": [
                    {
                        "path": f.path,
                        "line": f.line,
                        "col": f.col,
                        "code": f.code,
                        "severity": f.severity,
                        "message": f.message,
                    }
                    for f in findings
                ],
                "notices": list(notices),
                "summary": summary_counts(findings),
            },
            ensure_ascii=False,
            indent=2,
        )
    if fmt == "github":
        lines = [_github(f) for f in findings]
        lines += [f"::notice title=runbook-exec check::{_escape_data(n)}" for n in notices]
        return "\n".join(lines)
    if fmt == "gitlab":
        return json.dumps([_gitlab(f) for f in findings], ensure_ascii=False, indent=2)
    return "\n".join(str(f) for f in findings)


def summary_counts(findings: Sequence[Finding]) -> dict[str, int]:
    """How many findings of each severity."""
    return {s: sum(1 for f in findings if f.severity == s) for s in (ERROR, WARNING, NOTICE)}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _github(f: Finding) -> str:
    kind = {ERROR: "error", WARNING: "warning"}.get(f.severity, "notice")
    props = f"file={_escape_property(f.path)}"
    if f.line:
        props += f",line={f.line},col={f.col}"
    props += f",title={_escape_property(f.code)}"
    return f"::{kind} {props}::{_escape_data(f'{f.code} {f.message}')}"


def _gitlab(f: Finding) -> dict[str, object]:
    fingerprint = hashlib.sha256(f"{f.path}:{f.line}:{f.col}:{f.code}:{f.message}".encode()).hexdigest()
    return {
        "description": f"{f.code} {f.message}",
        "check_name": f.code,
        "fingerprint": fingerprint,
        "severity": {ERROR: "major", WARNING: "minor"}.get(f.severity, "info"),
        "location": {"path": f.path, "lines": {"begin": max(f.line, 1)}},
    }
