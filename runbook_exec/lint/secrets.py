"""Text in a runbook that looks like a secret (``RX401``–``RX403``), shown masked in the finding itself.

Three kinds: tokens of well-known formats and PEM private-key blocks (the masker's own list,
:mod:`runbook_exec.secrets.patterns`, so whatever ``check`` flags is also masked in output), and
``KEY=value`` / ``KEY: value`` lines whose value is long and random-looking. A finding names the kind
and shows at most the format's public prefix, never the value.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

from runbook_exec.lint.findings import Finding, finding
from runbook_exec.secrets.names import is_secret_name
from runbook_exec.secrets.patterns import SECRET_PATTERNS

# Fixed sub-prefixes of a format that are safe to show after its trigger (``sk-`` + ``proj-``).
_PUBLIC_SUFFIXES = ("proj-", "svcacct-", "admin-", "ant-", "pt_", "sk_")


_ASSIGNMENT = re.compile(
    r"""(?x)
    (?:^|[\s;"'{(,])(?:export\s+)?
    (?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)
    \s*(?:=|:\s)\s*
    (?P<q>["']?)(?P<value>[^\s"'`#,;]{12,})(?P=q)
    """
)
# Words in a name that hint at a credential, beyond masking's secret names. Wider on purpose: there a name
# can refuse a run (a short value under it cannot be masked), here it only lowers the randomness bar of a
# finding, so ``apiKey``, ``client-secret``, ``auth_header`` or ``SECRET_KEY_BASE`` count too.
_SECRET_HINT = re.compile(r"(?i)pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|credential|auth")
_PLACEHOLDER = re.compile(
    r"(?i)^(?:<.*>|\*+|x{3,}.*|\.{3}.*|change[_-]?me.*|your[_-].*|example.*|dummy.*|redacted|placeholder.*|"
    r"\$.*|\{\{.*\}\}|%.*%)$"
)


def secret_key(key: str) -> bool:
    """A name the runner treats as secret (:func:`runbook_exec.secrets.names.is_secret_name`) or one that hints
    at a credential."""
    return is_secret_name(key) or _SECRET_HINT.search(key) is not None


def mask(value: str, public: int) -> str:
    """``value`` with everything past its public prefix replaced by ``***``."""
    return value[:public] + "***"


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
    for lineno, line in enumerate(text.split("\n"), start=1):
        covered: list[tuple[int, int]] = []
        for start, end, message, code in _scan_line(line):
            if any(s <= start < e or start <= s < end for s, e in covered):
                continue
            covered.append((start, end))
            out.append(finding(path, lineno, start + 1, code, message))
    return out


def _scan_line(line: str) -> Iterator[tuple[int, int, str, str]]:
    """``(start, end, message, code)`` of each secret on one line, character offsets."""
    data = line.encode("utf-8", "surrogatepass")

    def chars(offset: int) -> int:
        return len(data[:offset].decode("utf-8", "ignore"))

    for pattern in SECRET_PATTERNS if _ANY_TRIGGER.search(data) else ():
        for trigger in pattern.triggers:
            pos = data.find(trigger)
            while pos >= 0:
                span = pattern.span(data, pos)
                if span is not None and not _reference(line[chars(span[0]) : chars(span[1])]):
                    start, end = chars(min(pos, span[0])), chars(span[1])
                    public = line[start : chars(span[0])] if span[0] > pos else _public_prefix(line[start:], trigger)
                    code = "RX403" if pattern.name == "pem-private-key" else "RX401"
                    shown = public + "***"
                    yield start, end, f"{pattern.description} in the text: {shown}", code
                pos = data.find(trigger, pos + 1)
    for m in _ASSIGNMENT.finditer(line):
        key, value = m.group("key"), m.group("value")
        if looks_random(value, secret_key(key)):
            start = m.start("value")
            yield start, m.end("value"), f"{key}={mask(value, 0)}: a {len(value)}-character random value", "RX402"


# Any pattern's trigger: most lines hold none, and then no pattern needs to look.
_ANY_TRIGGER = re.compile(b"|".join(re.escape(t) for p in SECRET_PATTERNS for t in p.triggers))


def _reference(secret: str) -> bool:
    """A ``$VAR`` / ``${VAR}`` / ``<placeholder>`` / ``***`` where a secret would go: not a secret."""
    return bool(re.fullmatch(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(?:[:?-][^}]*)?\}?|<[^>]*>|\*+|x{3,}|\.{3}", secret))


def _public_prefix(text: str, trigger: bytes) -> str:
    """The trigger and a fixed sub-prefix (``sk-proj-``), never a random character."""
    head = trigger.decode("utf-8", "replace")
    if text.startswith("-----BEGIN "):
        end = text.find("-----", 11)
        return text[: end + 5] if end > 0 else head
    rest = text[len(head) :]
    return head + next((s for s in _PUBLIC_SUFFIXES if rest.startswith(s)), "")
