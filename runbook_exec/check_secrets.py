"""Text in a runbook that looks like a secret (``RX401``–``RX403``), shown masked in the finding itself.

Three kinds: tokens of well-known formats (the masker's unknown-secret patterns), PEM private-key blocks,
and ``KEY=value`` / ``KEY: value`` lines whose value is long and random-looking. A finding names the kind
and shows at most the format's public prefix, never the value.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from runbook_exec.check_findings import Finding, finding


@dataclass(frozen=True)
class TokenPattern:
    """A secret format: what it is called, how to find it, and how many leading characters are public."""

    name: str
    regex: re.Pattern[str]
    public: int  # characters safe to show (the format's fixed prefix)


def _own_patterns() -> tuple[TokenPattern, ...]:
    # The named group "secret" is the part that is masked; the rest of the match is a public prefix.
    def p(name: str, regex: str) -> TokenPattern:
        return TokenPattern(name, re.compile(regex), 0)

    return (
        p("OpenAI API key", r"\bsk-(?:proj-|svcacct-|admin-)?(?P<secret>[A-Za-z0-9_\-]{20,})"),
        p("Anthropic API key", r"\bsk-ant-(?P<secret>[A-Za-z0-9_\-]{20,})"),
        p("GitHub token", r"\b(?:gh[pousr]_|github_pat_)(?P<secret>[A-Za-z0-9_]{30,})"),
        p("GitLab token", r"\bglpat-(?P<secret>[A-Za-z0-9_\-]{20,})"),
        p("Slack token", r"\bxox[abprs]-(?P<secret>[A-Za-z0-9\-]{10,})"),
        p("AWS access key id", r"\b(?:AKIA|ASIA)(?P<secret>[0-9A-Z]{16})\b"),
        p("Google API key", r"\bAIza(?P<secret>[0-9A-Za-z_\-]{35})"),
        p("Stripe key", r"\b[rs]k_live_(?P<secret>[0-9A-Za-z]{20,})"),
        p("JSON Web Token", r"\beyJ(?P<secret>[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})"),
        p("bearer token", r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9_\-.=+/]{20,})"),
        p("password in a URL", r"\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:(?P<secret>[^\s@/$]{4,})@"),
    )


def token_patterns() -> tuple[TokenPattern, ...]:
    """The unknown-secret patterns: the masker's own when available, else this module's list."""
    try:
        from runbook_exec import secret_patterns  # noqa: PLC0415
    except ImportError:
        return _own_patterns()
    shared = getattr(secret_patterns, "PATTERNS", None)
    if not shared:
        return _own_patterns()
    out = []
    for item in shared:
        name = getattr(item, "name", None) or str(getattr(item, "key", "secret"))
        regex = getattr(item, "regex", None) or getattr(item, "pattern", None)
        if isinstance(regex, str):
            regex = re.compile(regex)
        if isinstance(regex, re.Pattern) and isinstance(regex.pattern, str):
            out.append(TokenPattern(name, regex, int(getattr(item, "public", 0) or 0)))
    return tuple(out) or _own_patterns()


_PEM = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----")
_ASSIGNMENT = re.compile(
    r"""(?x)
    (?:^|[\s;"'{(,])(?:export\s+)?
    (?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)
    \s*(?:=|:\s)\s*
    (?P<q>["']?)(?P<value>[^\s"'`#,;]{12,})(?P=q)
    """
)
_SECRET_KEY = re.compile(r"(?i)(pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|credential|auth|_key$)")
_PLACEHOLDER = re.compile(
    r"(?i)^(?:<.*>|\*+|x{3,}.*|\.{3}.*|change[_-]?me.*|your[_-].*|example.*|dummy.*|redacted|placeholder.*|"
    r"\$.*|\{\{.*\}\}|%.*%)$"
)


def mask(value: str, public: int) -> str:
    """``value`` with everything past its public prefix replaced by ``***``."""
    return value[:public] + "***"


def shown(match: re.Match[str], public: int) -> str:
    """The matched text with its secret part masked (the ``secret`` group, else past ``public`` chars)."""
    if "secret" in match.re.groupindex and match.group("secret") is not None:
        text, base = match.group(0), match.start()
        return text[: match.start("secret") - base] + "***" + text[match.end("secret") - base :]
    return mask(match.group(0), public)


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def looks_random(value: str, secret_key: bool) -> bool:
    """A value random enough to be a credential (lower bar when the key's name says it is one)."""
    if _PLACEHOLDER.match(value) or ("/" in value.strip("/") and not secret_key):
        return False
    classes = sum(bool(re.search(c, value)) for c in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))
    if secret_key:
        return len(value) >= 12 and entropy(value) >= 3.0 and classes >= 2
    return len(value) >= 20 and entropy(value) >= 4.0 and classes >= 3


def check_secrets(path: str, text: str) -> list[Finding]:
    """Every secret-looking string in the Markdown ``text`` (front matter, prose and code alike)."""
    out: list[Finding] = []
    patterns = token_patterns()
    for lineno, line in enumerate(text.split("\n"), start=1):
        covered: list[tuple[int, int]] = []
        for start, end, message, code in _scan_line(line, patterns):
            if any(s <= start < e or start <= s < end for s, e in covered):
                continue
            covered.append((start, end))
            out.append(finding(path, lineno, start + 1, code, message))
    return out


def _scan_line(line: str, patterns: tuple[TokenPattern, ...]) -> Iterator[tuple[int, int, str, str]]:
    pem = _PEM.search(line)
    if pem:
        yield pem.start(), len(line), f"{pem.group(1).lower()} block (-----BEGIN {pem.group(1)}-----***)", "RX403"
    for pattern in patterns:
        for m in pattern.regex.finditer(line):
            yield m.start(), m.end(), f"{pattern.name} in the text: {shown(m, pattern.public)}", "RX401"
    for m in _ASSIGNMENT.finditer(line):
        key, value = m.group("key"), m.group("value")
        if looks_random(value, bool(_SECRET_KEY.search(key))):
            start = m.start("value")
            yield start, m.end("value"), f"{key}={mask(value, 0)}: a {len(value)}-character random value", "RX402"
