"""Secrets recognised by their shape alone, even when no env file names them.

One list, shared by the streaming redactor (:mod:`runbook_exec.secrets.masking`) and by ``runbook-exec check``
(which flags such tokens written into a runbook). Each pattern is anchored on a literal *trigger* so a
scanner can find candidates with a multi-literal search and only then run the regex at that position; the
regex is matched with ``pattern.match(data, pos)`` where ``pos`` is the trigger's start.

``viable`` says whether the bytes from a trigger to the end of the data could still become (or extend) a
match once more bytes arrive; a streaming scanner holds such a tail back instead of emitting it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SecretPattern:
    """One kind of token that is masked wherever it appears.

    ``group`` names the regex group to mask (``None``: the whole match), so ``Bearer`` and the user name in
    a URL stay readable while the token and the password go.
    """

    name: str
    description: str
    triggers: tuple[bytes, ...]
    regex: re.Pattern[bytes]
    viable: re.Pattern[bytes]
    group: str | None = None

    def span(self, data: bytes, pos: int) -> tuple[int, int] | None:
        """The span to mask if the pattern matches at ``pos`` (the start of a trigger), else ``None``."""
        m = self.regex.match(data, pos)
        if m is None:
            return None
        if self.group is None:
            return m.span()
        start, end = m.span(self.group)
        return (start, end) if start >= 0 else None

    def finditer(self, data: bytes) -> list[tuple[int, int]]:
        """Every span to mask in a finished text (used by ``check`` and for tests)."""
        spans: list[tuple[int, int]] = []
        for trigger in self.triggers:
            pos = data.find(trigger)
            while pos >= 0:
                found = self.span(data, pos)
                if found is not None:
                    spans.append(found)
                pos = data.find(trigger, pos + 1)
        return sorted(set(spans))


# A token character for keys that use ``-`` and ``_`` (OpenAI) and the left edge that keeps ``task-`` or
# ``disk-`` from starting a match.
_EDGE = rb"(?<![A-Za-z0-9_\-])"
_WORD_EDGE = rb"(?<![A-Za-z0-9_])"  # a word boundary before the token (``x-glpat-…`` still counts)
# Every match is bounded: a token longer than any real one of its kind is not one (its first part is still
# masked), and a streaming scanner never holds output back for a match that cannot end.
_TOKEN_MAX = 255
_JWT_PART = 8192
_URL_PASSWORD_MAX = 1024
_PEM_LABEL = rb"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----"
# What a PEM block can hold, and no more, so a BEGIN line without its END masks only what could be the key:
# the ``Proc-Type:`` / ``DEK-Info:`` headers of encrypted keys, then base64 lines, all full-length (40-76
# characters) but the last, separated by line breaks (or by spaces, once an unquoted ``echo`` joined them).
# Bounded, so a streaming scanner holds a stray BEGIN line back only while what follows still fits.
_PEM_SEP = rb"[ \t\r\n]{1,32}"
_PEM_HEADER = rb"[A-Za-z][A-Za-z0-9-]{0,40}:[ \t]{0,8}[A-Za-z0-9,.-]{1,200}"
_PEM_FULL = rb"[A-Za-z0-9+/]{40,76}={0,2}"
_PEM_LINES = 400  # lines of 64: 25 KB of key, beyond any RSA key
_PEM_END = rb"-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----"
_PEM_TOKEN = rb"(?:" + _PEM_HEADER + rb"|[A-Za-z0-9+/]{1,76}={0,2})"


def trie_regex(words: Iterable[bytes]) -> bytes:
    """A regex matching exactly ``words``, built as a trie: at most one branch is tried per byte."""
    heads: dict[bytes, list[bytes]] = {}
    end = False
    for w in words:
        if w:
            heads.setdefault(w[:1], []).append(w[1:])
        else:
            end = True
    if not heads:
        return b""
    branches = [re.escape(head) + trie_regex(rest) for head, rest in sorted(heads.items())]
    return b"(?:" + b"|".join(branches) + b")" + (b"?" if end else b"")


def _prefixes(word: bytes) -> bytes:
    """A regex matching every non-empty prefix of ``word`` (``(?:s(?:k(?:-)?)?)``)."""
    return trie_regex(word[:i] for i in range(1, len(word) + 1))


SECRET_PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern(
        name="openai-key",
        description="OpenAI API key (sk-…, sk-proj-…)",
        triggers=(b"sk-",),
        regex=re.compile(_EDGE + rb"sk-[A-Za-z0-9_\-]{20,%d}" % _TOKEN_MAX),
        viable=re.compile(_EDGE + rb"(?:" + _prefixes(b"sk-") + rb"|sk-[A-Za-z0-9_\-]{0,%d})\Z" % _TOKEN_MAX),
    ),
    SecretPattern(
        name="langsmith-key",
        description="LangSmith API key (lsv2_pt_…, lsv2_sk_…)",
        triggers=(b"lsv2_",),
        regex=re.compile(_EDGE + rb"lsv2_(?:pt|sk)_[A-Za-z0-9_]{20,%d}" % _TOKEN_MAX),
        viable=re.compile(
            _EDGE
            + rb"(?:"
            + _prefixes(b"lsv2_")
            + rb"|lsv2_(?:p|s|pt|sk)|lsv2_(?:pt|sk)_[A-Za-z0-9_]{0,%d})\Z" % _TOKEN_MAX
        ),
    ),
    SecretPattern(
        name="jwt",
        description="JSON Web Token (eyJ….eyJ….signature)",
        triggers=(b"eyJ",),
        regex=re.compile(
            rb"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{2,%d}\.eyJ[A-Za-z0-9_\-]{2,%d}\.[A-Za-z0-9_\-]{0,%d}"
            % ((_JWT_PART,) * 3)
        ),
        viable=re.compile(
            rb"(?<![A-Za-z0-9_\-])(?:" + _prefixes(b"eyJ") + rb"|eyJ[A-Za-z0-9_.\-]{0,%d})\Z" % (3 * _JWT_PART + 8)
        ),
    ),
    SecretPattern(
        name="pem-private-key",
        description="PEM private key block",
        triggers=(b"-----BEGIN ",),
        # With its END line: the whole block (lines of any length up to 76). Without: the label and the lines
        # that can be a key body, full-length but the last; a short last line only when padded or 16+
        # characters long (a word such as ``done`` is not taken).
        regex=re.compile(
            _PEM_LABEL
            + rb"(?:(?:"
            + _PEM_SEP
            + _PEM_TOKEN
            + rb"){0,%d}?[ \t\r\n]{0,32}" % _PEM_LINES
            + _PEM_END
            + rb"|(?:"
            + _PEM_SEP
            + _PEM_HEADER
            + rb"){0,4}(?:"
            + _PEM_SEP
            + _PEM_FULL
            + rb"){0,%d}(?:" % _PEM_LINES
            + _PEM_SEP
            + rb"(?:[A-Za-z0-9+/]{1,39}={1,2}|[A-Za-z0-9+/]{16,39}(?![A-Za-z0-9+/=])))?)"
        ),
        viable=re.compile(
            rb"(?:"
            + _prefixes(b"-----BEGIN ")
            + rb"|-----BEGIN [A-Z0-9 ]{0,40}"
            + rb"|-----BEGIN [A-Z0-9 ]{0,40}-{1,5}"
            + rb"|"
            + _PEM_LABEL
            # still open while more bytes could add a header, a line or the END line
            + rb"(?:"
            + _PEM_SEP
            + _PEM_TOKEN
            + rb"){0,%d}(?:" % _PEM_LINES
            + _PEM_SEP
            + rb"(?:[A-Za-z][A-Za-z0-9-]{0,40}(?::[ \t]{0,8}[A-Za-z0-9,.-]{0,200})?|[A-Za-z0-9+/]{1,76}={0,2})"
            + rb"|[ \t\r\n]{0,32}(?:"
            + _prefixes(b"-----END ")
            + rb"|-----END [A-Z0-9 ]{0,40}-{0,4})?"
            + rb"))\Z"
        ),
    ),
    SecretPattern(
        name="bearer-token",
        description="Authorization: Bearer <token>",
        triggers=(b"Bearer", b"bearer", b"BEARER"),
        regex=re.compile(rb"(?i:bearer)[ \t]{1,16}(?P<secret>[A-Za-z0-9._~+/\-]{8,%d}={0,2})" % _JWT_PART),
        viable=re.compile(
            rb"(?:" + _prefixes(b"bearer") + rb"|bearer[ \t]{1,16}[A-Za-z0-9._~+/=\-]{0,%d})\Z" % (_JWT_PART + 2), re.I
        ),
        group="secret",
    ),
    SecretPattern(
        name="github-token",
        description="GitHub token (ghp_…, gho_…, ghs_…, github_pat_…)",
        triggers=(b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_"),
        regex=re.compile(_WORD_EDGE + rb"(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]{30,%d}" % _TOKEN_MAX),
        viable=re.compile(_WORD_EDGE + rb"(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]{0,%d}\Z" % _TOKEN_MAX),
    ),
    SecretPattern(
        name="gitlab-token",
        description="GitLab personal access token (glpat-…)",
        triggers=(b"glpat-",),
        regex=re.compile(_WORD_EDGE + rb"glpat-[A-Za-z0-9_\-]{20,%d}" % _TOKEN_MAX),
        viable=re.compile(_WORD_EDGE + rb"glpat-[A-Za-z0-9_\-]{0,%d}\Z" % _TOKEN_MAX),
    ),
    SecretPattern(
        name="slack-token",
        description="Slack token (xoxb-…, xoxp-…)",
        triggers=(b"xoxa-", b"xoxb-", b"xoxp-", b"xoxr-", b"xoxs-"),
        regex=re.compile(_WORD_EDGE + rb"xox[abprs]-[A-Za-z0-9\-]{10,%d}" % _TOKEN_MAX),
        viable=re.compile(_WORD_EDGE + rb"xox[abprs]-[A-Za-z0-9\-]{0,%d}\Z" % _TOKEN_MAX),
    ),
    SecretPattern(
        name="aws-access-key-id",
        description="AWS access key id (AKIA…, ASIA…)",
        triggers=(b"AKIA", b"ASIA"),
        regex=re.compile(_WORD_EDGE + rb"(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9_])"),
        # 16 characters in, the edge after them is still unknown
        viable=re.compile(_WORD_EDGE + rb"(?:AKIA|ASIA)[0-9A-Z]{0,16}\Z"),
    ),
    SecretPattern(
        name="google-api-key",
        description="Google API key (AIza…)",
        triggers=(b"AIza",),
        regex=re.compile(_WORD_EDGE + rb"AIza[0-9A-Za-z_\-]{35}"),
        viable=re.compile(_WORD_EDGE + rb"AIza[0-9A-Za-z_\-]{0,34}\Z"),
    ),
    SecretPattern(
        name="stripe-key",
        description="Stripe live key (sk_live_…, rk_live_…)",
        triggers=(b"sk_live_", b"rk_live_"),
        regex=re.compile(_WORD_EDGE + rb"[rs]k_live_[0-9A-Za-z]{20,%d}" % _TOKEN_MAX),
        viable=re.compile(_WORD_EDGE + rb"[rs]k_live_[0-9A-Za-z]{0,%d}\Z" % _TOKEN_MAX),
    ),
    SecretPattern(
        name="url-password",
        description="password in a URL (scheme://user:PASSWORD@host, //user:PASSWORD@host)",
        # Triggered by the ``//`` of a scheme or of a scheme-relative URL.
        triggers=(b"//",),
        regex=re.compile(rb"//[^\s/?#@:]{0,%d}:(?P<secret>[^\s/?#@]{1,%d})@" % (_TOKEN_MAX, _URL_PASSWORD_MAX)),
        viable=re.compile(rb"(?:/|//[^\s/?#@:]{0,%d}(?::[^\s/?#@]{0,%d})?)\Z" % (_TOKEN_MAX, _URL_PASSWORD_MAX)),
        group="secret",
    ),
)


def find_unknown_secrets(data: bytes) -> list[tuple[str, tuple[int, int]]]:
    """``(pattern name, span)`` for every shape-recognised secret in a finished text."""
    return [(p.name, span) for p in SECRET_PATTERNS for span in p.finditer(data)]
