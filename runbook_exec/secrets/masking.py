"""Secret masking: the only path from the shell (or any value) to any sink.

Interface used by the rest of the package:

* :class:`Redactor` built from :class:`Secret` values;
* ``Redactor.stream()`` gives a :class:`MaskStream` whose ``feed(bytes) -> bytes`` / ``flush() -> bytes``
  mask a byte stream exactly across arbitrary chunk boundaries (streamed output == one-shot output);
* ``Redactor.mask(str)`` / ``mask_bytes(bytes)`` mask a finished text, ``mask_json(obj)`` every string of a
  JSON-like structure one value at a time;
* ``Redactor.leaks(bytes)`` names the keys whose values (in any form) still appear (final rescan);
* :func:`classify` decides which environment values are secrets and which cannot be masked;
* :func:`strip_controls` drops what is not text (escape sequences, control bytes): every sink that shows
  plain text uses it, and it drops exactly what the masker skips, so it can never join a value back.

How it works. Every value is expanded into the forms it is printed in (raw, JSON, ``repr``, shell quoting,
``$$``, URL-encoding, base64 at the three byte offsets, hex, …), and so is each of its parts (:func:`parts`:
each line of a multi-line value, the value without its own quotes), each part by the short-value policy of its
own length. Matching runs on a *normalised view* of the bytes with escape sequences (CSI, OSC, charset
designations, two-byte escapes), C0 control bytes, DEL and all ASCII whitespace removed, so colour codes,
window titles or a bell inside a value, CRLF from the pty, base64 wrapped at 76 columns and PEM lines joined by
any whitespace all still match; hits are mapped back to the original bytes. The body of an OSC (a window title,
a hyperlink's URL) is searched on its own. One literal finder (:mod:`runbook_exec.secrets.literals`: Hyperscan,
or an Aho-Corasick automaton) finds every occurrence of every form, overlapping ones included; overlapping hits
merge into one ``***``. Values shorter than :data:`WORD_MIN` characters are only masked where they stand as a
whole word (a control byte next to one is an edge: a backspace can make it one). Buffers longer than two blocks
are viewed block by block (:class:`_Blocks`), so mapping a hit back never walks the whole buffer.

Tokens that look like secrets (:mod:`runbook_exec.secrets.patterns`) are masked too, found by their literal
triggers in the original bytes.

Streaming holds back only what could still become a match: the longest tail of the normalised view that is
a prefix of some form, an unfinished escape sequence, and a tail where a shape pattern could still match.
``flush()`` at the end of a cell releases the rest. When the output goes quiet, ``release()`` lets the held
tail go without waiting for the end: a tail that is a prefix of 4 or more characters of some form is shown as
the marker, a shorter one as it is; if the rest of that secret arrives later it is masked all the same.
Only then can the streamed output differ from the one-shot output (a marker for what turned out not to be a
secret, or two markers where one-shot masking gives one), and for a shape match longer than
:data:`_PATTERN_HOLD`, which is decided as it stands instead of held whole.
"""

from __future__ import annotations

import base64
import bisect
import html
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import ahocorasick_rs

from runbook_exec.secrets.literals import LiteralFinder, literal_finder
from runbook_exec.secrets.names import is_secret_name
from runbook_exec.secrets.patterns import SECRET_PATTERNS, SecretPattern, trie_regex

MARKER = b"***"

SHORT_MIN = 4  # below this (or true/false) a value cannot be masked at all
WORD_MIN = 8  # below this a value is masked only as a whole word

# What is not text, for the masker and for every sink (one definition, see :func:`strip_controls`).
# Escape sequences, each bounded so a stray ESC cannot hold output back for long:
#   CSI  ESC [ params intermediates final   (colours, cursor moves; private parameters such as ESC[>4;1m)
#   OSC  ESC ] body BEL  |  ESC ] body ESC \   (window titles, hyperlinks; terminals show no part of it)
#   nF   ESC intermediates final            (charset designation: ``tput sgr0`` prints ESC ( B)
#   Fe/Fp/Fs  ESC final                     (two bytes; also what an incomplete ESC [ / ESC ] falls back to)
# Only an OSC contains a second ESC (the one of its ESC \ terminator), and only as its last-but-one byte.
_OSC_BODY_MAX = 512
_SEQUENCE = (
    rb"\x1b(?:\[[0-?]{0,32}[ -/]{0,8}[@-~]|\][^\x07\x1b]{0,%d}(?:\x07|\x1b\\)|[ -/]{1,8}[0-~]|[0-~])" % _OSC_BODY_MAX
)
_SEQUENCE_MAX = 2 + _OSC_BODY_MAX + 2
_SEQUENCE_RE = re.compile(_SEQUENCE)
_OSC_RE = re.compile(rb"\x1b\]([^\x07\x1b]{0,%d})(?:\x07|\x1b\\)" % _OSC_BODY_MAX)
_OSC_START_RE = re.compile(rb"\x1b\]")
_SHORT_MAX = 43  # the longest sequence that is not an OSC (a CSI)
# The tail of an escape sequence that more bytes could still complete.
_UNFINISHED_RE = re.compile(rb"\x1b(?:\[[0-?]{0,32}[ -/]{0,8}|[ -/]{0,8}|\][^\x07\x1b]{0,%d}\x1b?)\Z" % _OSC_BODY_MAX)
# Single bytes that are not text: C0 controls (BEL, BS, a lone ESC, ...) and DEL. Tab, LF and CR are text
# to a sink (line structure); the masker skips them with the other whitespace.
_CONTROLS = bytes(range(0x20)).translate(None, b"\t\n\r") + b"\x7f"
_SKIPPED = _CONTROLS + b" \t\n\r"  # not in the masker's view: controls and all ASCII whitespace
_SKIPPED_SET = frozenset(_SKIPPED)
_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") | frozenset(range(0x80, 0x100))
_PREFIX_LEN = 4  # needles are at least this long; the partial-match search filters on this many bytes
_CTX = 256  # original bytes kept before the unsent part, for word edges and look-behinds
# A shape match still growing is held back up to this long (more than any token, and than a PEM block's
# bound): beyond it, it is decided as it stands (masked if it matches), so a line of megabytes that starts
# like a token costs linear time and bounded memory. Streamed output equals one-shot output below it.
_PATTERN_HOLD = 64 << 10


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


def classify(
    values: Mapping[str, str], *, declared_secret: Iterable[str] = (), allow_short: bool = False
) -> Classification:
    """Decide how each value is masked. Every value given here is treated as a secret.

    8+ characters: masked anywhere. 4-7: masked as a whole word, with a warning. Under 4 or ``true`` /
    ``false``: cannot be masked; refused when the key is marked secret (by name or declaration) unless
    ``allow_short``, otherwise left visible with a warning.
    """
    declared = set(declared_secret)
    secrets: list[Secret] = []
    warnings: list[str] = []
    refused: list[str] = []
    for key, value in values.items():
        if value == "":
            continue
        marked = key in declared or is_secret_name(key)
        if len(value) < SHORT_MIN or value.lower() in ("true", "false"):
            if marked and not allow_short:
                refused.append(key)
            else:
                warnings.append(f"{key}: value too short to mask safely; it stays visible in output")
            continue
        if len(value) < WORD_MIN:
            warnings.append(f"{key}: value has {len(value)} characters; masked only as a whole word")
        secrets.append(Secret(key, value))
    return Classification(tuple(secrets), tuple(warnings), tuple(refused))


def inherited(environ: Mapping[str, str]) -> tuple[Secret, ...]:
    """Values of inherited environment variables whose names mark them secret (:func:`is_secret_name`): CI
    systems pass secrets this way, and every cell sees them. The short-value policy applies, without a word:
    a value that cannot be masked (under 4 characters, ``true``/``false``, whitespace only) is left out, as it
    came from no input of the run's own."""
    return tuple(
        Secret(key, value)
        for key, value in sorted(environ.items())
        if is_secret_name(key)
        and len(value) >= SHORT_MIN
        and value.lower() not in ("true", "false")
        and len(normalise(value.encode("utf-8", "surrogateescape"))) >= SHORT_MIN
    )


# ---------------------------------------------------------------------------------------------------------
# Forms of a value


def whole_word_only(value: str) -> bool:
    """Whether ``value`` is short enough that it is masked only where it stands as a whole word."""
    return len(value) < WORD_MIN or len(normalise(value.encode("utf-8", "surrogateescape"))) < WORD_MIN


def normalise(data: bytes) -> bytes:
    """The view matching runs on: ``data`` without escape sequences, control bytes and ASCII whitespace."""
    if b"\x1b" in data:
        data = _SEQUENCE_RE.sub(b"", data)
    return data.translate(None, _SKIPPED)


def strip_controls(data: bytes) -> bytes:
    """``data`` without what is not text: escape sequences (CSI, OSC, charset designations, two-byte
    escapes), C0 control bytes other than tab, LF and CR, and DEL.

    The one definition every sink uses (transcript, JUnit, release.log), and the same one the masker skips
    when matching, so removing these bytes after masking can never join the pieces of a value back together.
    """
    if b"\x1b" in data:
        data = _SEQUENCE_RE.sub(b"", data)
    return data.translate(None, _CONTROLS)


_PRINTF_Q_SPECIAL = frozenset(" \t'\"\\|&;()<>!{}*[]?^$`,")


def _printf_q(value: str) -> str:
    """``printf %q`` / ``${K@Q}``-style backslash quoting as bash 5.2 prints printable values."""
    out = []
    for i, ch in enumerate(value):
        if ch in _PRINTF_Q_SPECIAL or (i == 0 and ch in "~#"):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _ansi_c(value: str, octal_non_ascii: bool) -> str:
    """The inside of bash's ``$'...'`` quoting (``printf %q``, ``declare -p`` of non-printable values)."""
    named = {"\a": "\\a", "\b": "\\b", "\x1b": "\\E", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    named |= {"\v": "\\v", "\\": "\\\\", "'": "\\'"}
    out = []
    for ch in value:
        if ch in named:
            out.append(named[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")
        elif ord(ch) >= 0x80 and octal_non_ascii:
            out.append("".join(f"\\{b:03o}" for b in ch.encode("utf-8", "surrogateescape")))
        else:
            out.append(ch)
    return "".join(out)


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def _base64_forms(raw: bytes) -> set[bytes]:
    """Base64 (standard and URL-safe) of ``raw`` at byte offsets 0, 1 and 2 inside a longer stream, with
    the characters that also depend on neighbouring bytes trimmed off both ends."""
    out: set[bytes] = set()
    for offset, lead in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(b"\0" * offset + raw).rstrip(b"=")
        if (offset + len(raw)) % 3:
            encoded = encoded[:-1]
        core = encoded[lead:]
        out.add(core)
        out.add(core.translate(bytes.maketrans(b"+/", b"-_")))
    return out


def _cat_v(raw: bytes, tabs: bool) -> bytes:
    """``cat -v`` (``tabs``: ``cat -A``/``-T``) notation: ``^X`` for control bytes, ``M-`` for high bytes."""
    out = bytearray()
    for byte in raw:
        if byte >= 0x80:
            out += b"M-"
        b = byte & 0x7F
        if (b == 0x09 and not tabs) or b == 0x0A:
            out.append(b)
        elif b < 0x20:
            out += b"^" + bytes([b + 0x40])
        elif b == 0x7F:
            out += b"^?"
        else:
            out.append(b)
    return bytes(out)


_C_ESCAPES = (("\\", "\\\\"), ("'", "\\'"), ('"', '\\"'), ("\t", "\\t"), ("\n", "\\n"))


def _backslash_forms(value: str) -> set[str]:
    """C-style backslash escapes (``\\\\``, ``\\'``, ``\\"``, ``\\t``, ``\\n``), any of them, both ways: the value
    escaped (``repr``-like printers escape some of these and not others), and a value registered with escapes
    printed unescaped (``printf %b``, ``echo -e``). Only escapes the value holds make forms (at most 32 each way)."""
    out = set()
    present = [pair for pair in _C_ESCAPES if pair[0] in value]
    for n in range(1, len(present) + 1):
        for chosen in itertools.combinations(present, n):
            # Backslashes first, so the ones the other escapes add are not doubled again.
            escaped = value
            for plain, code in chosen:
                escaped = escaped.replace(plain, code)
            out.add(escaped)
    codes = {code[1]: plain for plain, code in _C_ESCAPES if code in value}
    for n in range(1, len(codes) + 1):
        for chosen_codes in itertools.combinations(sorted(codes), n):
            pattern = re.compile(r"\\([" + re.escape("".join(chosen_codes)) + "])")
            out.add(pattern.sub(lambda m: codes[m.group(1)], value))
    return out


def _entity_forms(value: str) -> set[str]:
    """XML / HTML character references for quotes (``&apos;``, ``&#39;``, ``&#x27;``, ``&quot;``, ``&#34;``), with
    and without ``&``, ``<``, ``>`` escaped."""
    if "'" not in value and '"' not in value:
        return set()
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # (XML / .NET, html.escape, Go and markupsafe, numeric); html.escape's own pair is in forms() already
    pairs = (("&apos;", "&quot;"), ("&#x27;", "&quot;"), ("&#39;", "&#34;"), ("&#39;", "&quot;"))
    return {base.replace('"', quot).replace("'", apos) for base in (value, escaped) for apos, quot in pairs}


def _line_forms(line: str) -> set[bytes]:
    """The forms of one line of a multi-line value: as printed, under ``cat -v``/``cat -A``, JSON-escaped.
    The other forms escape the line breaks too, so the whole value's forms already hold them."""
    raw = line.encode("utf-8", "surrogateescape")
    json_ascii = json.dumps(line)[1:-1]
    texts = {json_ascii, json_ascii.replace("/", "\\/"), json.dumps(line, ensure_ascii=False)[1:-1]}
    out = {raw, _cat_v(raw, False), _cat_v(raw, True)} | {t.encode("utf-8", "surrogateescape") for t in texts}
    return {n for n in (normalise(f) for f in out) if len(n) >= _PREFIX_LEN}


def forms(value: str, *, with_base64: bool = True) -> set[bytes]:
    """Every printed form of ``value``, in the normalised view (see :func:`normalise`).

    ``with_base64`` adds the encodings that change every character (base64, hex), which short values, matched
    only as whole words, go without.
    """
    variants = {value}
    if "\n" in value or "\r" in value:
        lines = value.replace("\r\n", "\n")
        variants |= {lines, lines.replace("\n", "\r\n"), re.sub(r"\s+", " ", lines)}
    texts: set[str] = set()
    raws: set[bytes] = set()
    marked: set[bytes] = set()
    for v in variants:
        raw = v.encode("utf-8", "surrogateescape")
        raws.add(raw)
        marked |= {_cat_v(raw, False), _cat_v(raw, True)}  # cat -v, cat -A
        json_ascii = json.dumps(v)[1:-1]
        url = {quote(v, safe=""), quote(v), quote_plus(v), quote(v, safe="!'()*"), quote_plus(v, safe="/")}
        texts |= {
            v,
            json_ascii,
            json_ascii.replace("/", "\\/"),
            json.dumps(v, ensure_ascii=False)[1:-1],
            repr(v)[1:-1],
            repr(raw)[2:-1],
            v.replace("'", "'\\''"),  # set -x: 'ab'\''cd'
            v.replace("'", "'\"'\"'"),  # shlex.quote: 'ab'"'"'cd'
            v.replace("'", "''"),  # YAML single-quoted (docker compose config), SQL
            _printf_q(v),
            re.sub(r'(["$`\\])', r"\\\1", v),  # declare -p: "ab\"cd\$ef"
            v.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$"),  # an env file, double-quoted
            _ansi_c(v, False),
            _ansi_c(v, True),
            v.replace("$", "$$"),  # docker compose config
            html.escape(v),
            html.escape(v, quote=False),
            *_entity_forms(v),
            *_backslash_forms(v),
            *url,
            *(_lower_hex(u) for u in url),
        }
    out = {t.encode("utf-8", "surrogateescape") for t in texts} | raws | marked
    if with_base64:
        for raw in raws:
            out |= _base64_forms(raw)
            out |= _base64_forms(raw + b"\n") - _base64_forms(raw)  # `echo "$K" | base64`: same cores
            # xxd -p, od -An -tx1, hexdump: the view drops their spaces and line breaks
            out |= {raw.hex().encode(), raw.hex().upper().encode()}
        # The value's base64 with its first one or two bytes dropped, printed whole: how a masker that
        # registers shifted base64 (GitHub Actions) sees a value at offset 1 or 2 of a longer stream.
        for shift in (1, 2):
            encoded = base64.b64encode(value.encode("utf-8", "surrogateescape")[shift:])
            out |= {encoded, encoded.translate(bytes.maketrans(b"+/", b"-_"))}
    return {n for n in (normalise(f) for f in out) if len(n) >= _PREFIX_LEN}


_URL_PASSWORD = re.compile(r"(?<![^\s\"'=])(?:[A-Za-z][A-Za-z0-9+.-]{0,31}:)?//[^\s/?#@:]*:([^\s/?#@]+)@")


def parts(value: str) -> tuple[tuple[str, bool], ...]:
    """The strings masked for one value, each with whether it is a line of it: the value itself; without its
    surrounding quotes when it has them (``"..."`` / ``'...'``); and, for a multi-line value, each of its lines
    (stripped), so a line printed on its own, behind a prefix (``docker compose logs``, ``nl``,
    ``sed 's/^/> /'``) or marked up (``cat -A``) is still found; the password of a URL in it
    (``scheme://user:PASSWORD@host``). Each part is masked by the short-value policy
    of its own length; a part under :data:`SHORT_MIN` characters, or ``true``/``false``, is not one."""
    out: dict[str, bool] = {value: False}
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        out.setdefault(value[1:-1], False)
    for password in _URL_PASSWORD.findall(value):
        # The password of a URL-valued secret (a proxy, a DSN) is printed on its own too.
        out.setdefault(password, False)
        out.setdefault(unquote(password), False)
    if "\n" in value or "\r" in value:
        for line in re.split(r"\r\n|\r|\n", value):
            out.setdefault(line.strip(), True)
    return tuple(
        (text, line)
        for text, line in out.items()
        if text == value or (_usable(text) and text.lower() not in ("true", "false"))
    )


def _usable(text: str) -> bool:
    return len(normalise(text.encode("utf-8", "surrogateescape"))) >= SHORT_MIN


def needles(value: str) -> dict[bytes, bool]:
    """Every form searched for one secret value, each with whether it is matched only as a whole word.

    A form is matched anywhere only when its part (see :func:`parts`) is long enough and the form itself,
    in the normalised view, has at least :data:`WORD_MIN` bytes; a form found both ways is matched anywhere.
    """
    out: dict[bytes, bool] = {}
    for part, line in parts(value):
        whole_word = whole_word_only(part)
        for form in _line_forms(part) if line else forms(part, with_base64=not whole_word):
            word = whole_word or len(form) < WORD_MIN
            out[form] = out.get(form, True) and word
    return out


# ---------------------------------------------------------------------------------------------------------
# Mapping the normalised view back to the original bytes


def _kept(data: bytes) -> int:
    return len(data.translate(None, _SKIPPED))


class _View:
    """One buffer and its normalised view; maps normalised positions back to the original (lazily, since
    most buffers have no hit and need no mapping at all)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        # Escape sequences first (one left-to-right pass finds the same ones wherever scanning starts
        # outside a sequence), then control bytes and whitespace.
        self.text = _SEQUENCE_RE.sub(b"", data) if b"\x1b" in data else data
        self.norm = self.text.translate(None, _SKIPPED)
        self._plain = len(self.text) == len(data)
        self._ansi_at: list[int] | None = None  # text position at which each escape sequence stood
        self._ansi_removed: list[int] = []  # escape bytes removed up to and including each sequence
        self._spans: list[tuple[int, int]] | None = None
        self._last = (0, 0)  # (end, kept bytes in text[:end]): mapping continues from the previous hit

    def _index_ansi(self) -> list[int]:
        if self._ansi_at is None:
            # split/findall keep the per-sequence work in C (a Python loop over matches cost 3x more).
            pieces = list(map(len, _SEQUENCE_RE.split(self.data)))
            self._ansi_at = list(itertools.accumulate(pieces[:-1]))
            self._ansi_removed = list(itertools.accumulate(map(len, _SEQUENCE_RE.findall(self.data))))
        return self._ansi_at

    @property
    def ansi(self) -> list[tuple[int, int]]:
        """Spans of the escape sequences in the original bytes."""
        if self._spans is None:
            self._spans = []
            if not self._plain:
                before = 0
                for at, removed in zip(self._index_ansi(), self._ansi_removed, strict=True):
                    self._spans.append((at + before, at + removed))
                    before = removed
        return self._spans

    def _text_index(self, index: int) -> int:
        """Position in ``text`` (escapes removed) of normalised byte ``index``."""
        want = index + 1  # the smallest end with this many kept bytes in text[:end]
        end, kept = self._last if self._last[1] <= want else (0, 0)
        if end == 0:
            end, kept = index, _kept(self.text[:index])
        while kept < want:
            # At most one kept byte per byte: stepping by the shortfall can never overshoot.
            step = want - kept
            kept += _kept(self.text[end : end + step])
            end += step
        self._last = (end, kept)
        return end - 1

    def orig(self, index: int) -> int:
        """Original position of normalised byte ``index``."""
        pos = self._text_index(index)
        if self._plain:
            return pos
        j = bisect.bisect_right(self._index_ansi(), pos)
        return pos + (self._ansi_removed[j - 1] if j else 0)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original span of normalised ``[start, end)``."""
        return self.orig(start), self.orig(end - 1) + 1

    def osc_bodies(self) -> list[tuple[int, int]]:
        """Spans of the bodies of OSC sequences (see :func:`_osc_bodies`)."""
        return [] if self._plain else _osc_bodies(self.data)

    def word_before(self, pos: int) -> bool:
        """Whether a word character stands just before ``pos`` (escape sequences are transparent, up to
        :data:`_CTX` bytes of them: a streaming scanner keeps no more context than that)."""
        limit = pos - _CTX + 1
        while pos > 0:
            j = bisect.bisect_left(self.ansi, (pos, -1)) - 1  # last sequence starting before pos
            if j >= 0 and self.ansi[j][1] == pos:
                pos = self.ansi[j][0]
                if pos < limit:
                    return False
                continue
            return self.data[pos - 1] in _WORD
        return False

    def word_after(self, pos: int) -> bool | None:
        """Whether a word character stands at ``pos``; ``None`` if the buffer ends first."""
        while pos < len(self.data):
            j = bisect.bisect_left(self.ansi, (pos, -1))
            if j < len(self.ansi) and self.ansi[j][0] == pos:
                pos = self.ansi[j][1]
                continue
            return self.data[pos] in _WORD
        return None


_BLOCK = 8192  # buffers longer than two of these are viewed block by block


class _Blocks:
    """A large buffer as a row of :class:`_View` blocks cut outside escape sequences, so that mapping a hit
    back costs one block instead of the whole buffer (normalising block by block gives the same view)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        # The view of the whole equals the blocks' views joined (blocks are cut outside escape sequences);
        # it costs two C calls, and most buffers have no hit, so the blocks are only made to map one back.
        self.norm = normalise(data)
        self._starts: list[int] = []
        self._views: list[_View] = []
        self._norm_starts: list[int] = []
        self._whole: _View | None = None

    def _blocks(self) -> None:
        data = self.data
        cuts = [0]
        for pos in range(_BLOCK, len(data) - _BLOCK // 2, _BLOCK):
            cut = _before_sequence(data, pos)
            if cut > cuts[-1]:
                cuts.append(cut)
        cuts.append(len(data))
        self._starts = cuts[:-1]
        self._views = [_View(data[a:b]) for a, b in itertools.pairwise(cuts)]
        self._norm_starts = list(itertools.accumulate((len(v.norm) for v in self._views), initial=0))[:-1]

    def orig(self, index: int) -> int:
        if not self._views:
            self._blocks()
        k = bisect.bisect_right(self._norm_starts, index) - 1
        return self._starts[k] + self._views[k].orig(index - self._norm_starts[k])

    def span(self, start: int, end: int) -> tuple[int, int]:
        return self.orig(start), self.orig(end - 1) + 1

    def osc_bodies(self) -> list[tuple[int, int]]:
        return _osc_bodies(self.data)

    def word_before(self, pos: int) -> bool:
        return self._full().word_before(pos)

    def word_after(self, pos: int) -> bool | None:
        return self._full().word_after(pos)

    def _full(self) -> _View:
        # Word edges (short values only) look across blocks: one whole view, built on demand.
        if self._whole is None:
            self._whole = _View(self.data)
        return self._whole


def _osc_bodies(data: bytes) -> list[tuple[int, int]]:
    """Spans of the bodies of OSC sequences: not in the view, but a window title or a hyperlink can still
    carry a value, so they are searched on their own."""
    # ``]`` alone is found with memchr; a two-byte ``in`` costs more than the regex on a 4 KiB chunk.
    if b"]" not in data or _OSC_START_RE.search(data) is None:
        return []
    return [m.span(1) for m in _OSC_RE.finditer(data)]


def _view(data: bytes) -> _View | _Blocks:
    return _View(data) if len(data) <= 2 * _BLOCK else _Blocks(data)


def _tail_position(data: bytes, k: int) -> int:
    """Original position of the normalised byte ``k`` bytes before the end of ``normalise(data)``.

    Looks only at a window at the end (the usual partial match is a few bytes long), widening it as needed.
    """
    if k <= 8:
        # The usual case: a few bytes of a possible match at the very end, no escape sequence in or around
        # them (an OSC body before them would count as text here).
        pos, left = len(data), k
        while left and pos:
            pos -= 1
            if data[pos] not in _SKIPPED_SET:
                left -= 1
        if not left and b"\x1b" not in data[pos:] and _sequence_at(data, pos) is None:
            return pos
    width = 2 * k + 2 * _SEQUENCE_MAX + 64
    while True:
        lo = max(0, len(data) - width)
        view = _View(data[lo:])
        # A window may start inside an escape sequence; its remains are at most _SEQUENCE_MAX bytes at the
        # front.
        if lo == 0 or len(view.norm) - k >= 2 * _SEQUENCE_MAX:
            return lo + view.orig(len(view.norm) - k)
        width *= 2


def _sequence_at(data: bytes, pos: int) -> tuple[int, int] | None:
    """The escape sequence ``pos`` lies strictly inside (after its first byte), if any."""
    esc = data.rfind(b"\x1b", max(0, pos - _SEQUENCE_MAX), pos)
    if esc < 0 or (pos - esc >= _SHORT_MAX and data[esc + 1] != 0x5D):  # 0x5D: "]", an OSC
        return None  # the usual case: the last ESC is a colour code that ended long before ``pos``
    m = _SEQUENCE_RE.match(data, esc)
    return m.span() if m is not None and m.end() > pos else None


def _before_sequence(data: bytes, pos: int) -> int:
    """``pos``, or the start of the escape sequence it lies inside."""
    while (found := _sequence_at(data, pos)) is not None:
        pos = found[0]  # an OSC's ESC \\ first yields its own start; the next round finds the OSC's
    return pos


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of overlapping spans (nested and overlapping secrets become one marker)."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a < merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


# ---------------------------------------------------------------------------------------------------------


class MaskStream:
    """Masks one byte stream; holds back only bytes that may still be part of a secret."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._ctx = b""  # already emitted original bytes (context only); starts outside any escape sequence
        self._held = b""
        # Where (in ``_ctx``) the bytes released by :meth:`release` begin, or -1. Until the stream has moved
        # past them, matches that begin there are still looked for, and their part after it is masked.
        self._early = -1
        self._marked = False  # the last release ended with a marker (a continuation joins it)

    @property
    def held(self) -> int:
        """How many bytes are held back right now."""
        return len(self._held)

    def feed(self, data: bytes) -> bytes:
        """Mask the next chunk; returns every byte that can no longer be part of a secret."""
        if not data:
            return b""
        return self._step(b"".join((self._ctx, self._held, data)), final=False)

    def flush(self) -> bytes:
        """Release everything held back (end of cell / end of stream)."""
        if not self._ctx and not self._held:  # a cell that printed nothing (or a stream flushed twice)
            self._early = -1
            self._marked = False
            return b""
        out = self._step(self._ctx + self._held, final=True)
        self._ctx = b""
        self._early = -1
        return out

    def release(self) -> bytes:
        """The output went quiet: release what is held, without revealing the start of a secret.

        A held tail that is a prefix of at least :data:`_PREFIX_LEN` characters of some form becomes the
        marker; a shorter one (a prompt's ``$ `` that happens to begin a form) is shown as it is. Complete
        matches in the held bytes are masked as at the end of the stream. An unfinished escape sequence stays
        held (a terminal shows nothing of it either). If the rest of a secret arrives later, it is still masked:
        matches that begin in the released bytes keep being found until the stream has moved past them.
        """
        if not self._held:
            return b""
        redactor = self._redactor
        buf = self._ctx + self._held
        start = len(self._ctx)
        end = redactor._unfinished(buf, start)
        if end == start:
            return b""
        early = self._early if self._early >= 0 else start
        tail = redactor._open_tail(buf[:end], start)
        out, _ = redactor._process(buf[:end], start, True, early, tail)
        # Ends in a marker (perhaps followed by the whitespace after a released start): what continues it
        # later joins that marker.
        marked = out.endswith(MARKER) or (tail is not None and out.endswith(MARKER + buf[tail[1] : end]))
        if self._marked and out.startswith(MARKER):
            out = out[len(MARKER) :]
        lo = min(_before_sequence(buf, max(0, end - _CTX)), early)
        self._ctx = buf[lo:end]
        self._held = buf[end:]
        self._early = early - lo
        self._marked = marked
        return out

    def _step(self, buf: bytes, final: bool) -> bytes:
        start = len(self._ctx)
        early = self._early if self._early >= 0 else start
        out, cut = self._redactor._process(buf, start, final, early)
        if self._marked and out.startswith(MARKER) and early < start:
            out = out[len(MARKER) :]  # the rest of what the last release already showed as a marker
        if self._early >= 0 and cut == start and not final:
            # Nothing new is decided yet (the released bytes may still begin a match): keep them in view.
            self._held = buf[cut:]
            return out
        self._early = -1
        self._marked = False
        # Start the context outside an escape sequence, so it normalises the same, and before the one it
        # would cut, so a word edge behind that sequence is still seen.
        lo = _before_sequence(buf, max(0, cut - _CTX))
        self._ctx = buf[lo:cut]
        self._held = buf[cut:]
        return out


class Redactor:
    """Masks every occurrence of every secret value, in any printed form, and shaped tokens as ``***``.

    ``engine`` picks the literal search engine (:data:`runbook_exec.secrets.literals.ENGINES`; default: the fastest
    installed); every engine gives the same output, which the tests check.
    """

    def __init__(
        self,
        secrets: Iterable[Secret] = (),
        *,
        patterns: Iterable[SecretPattern] | None = SECRET_PATTERNS,
        engine: str | None = None,
    ) -> None:
        self.secrets = tuple(s for s in secrets if s.value)
        self.patterns = tuple(patterns or ())
        keys: dict[bytes, set[str]] = {}
        anywhere: set[bytes] = set()
        for s in self.secrets:
            for form, whole_word in needles(s.value).items():
                keys.setdefault(form, set()).add(s.key)
                if not whole_word:
                    anywhere.add(form)
        self._needles = sorted(keys)
        self._keys = [tuple(sorted(keys[n])) for n in self._needles]
        self._whole_word = [n not in anywhere for n in self._needles]
        self._maxlen = max((len(n) for n in self._needles), default=0)
        self._finder: LiteralFinder | None = None
        self._prefix_ac = None
        self._short_open: set[bytes] = set()
        if self._needles:
            self._finder = literal_finder(self._needles, engine)
            standard = ahocorasick_rs.MATCHKIND_STANDARD
            prefixes = sorted({n[:_PREFIX_LEN] for n in self._needles})
            # Open tails shorter than _PREFIX_LEN are looked up here instead of bisecting the needles.
            self._short_open = {n[:i] for n in self._needles for i in range(1, _PREFIX_LEN) if i < len(n)}
            self._prefix_ac = ahocorasick_rs.BytesAhoCorasick(prefixes, matchkind=standard)
        triggers: dict[bytes, list[SecretPattern]] = {}
        for p in self.patterns:
            for t in p.triggers:
                triggers.setdefault(t, []).append(p)
        self._triggers = sorted(triggers)
        self._trigger_patterns = [tuple(triggers[t]) for t in self._triggers]
        self._trigger_tail = re.compile(trie_regex({t[:i] for t in self._triggers for i in range(1, len(t))}) + rb"\Z")
        self._trigger_max = max(map(len, self._triggers), default=0)
        # Triggers never overlap one another; leftmost-longest lets the automaton skip ahead with memchr.
        self._trigger_ac = (
            ahocorasick_rs.BytesAhoCorasick(self._triggers, matchkind=ahocorasick_rs.MATCHKIND_LEFTMOST_LONGEST)
            if self._triggers
            else None
        )

    @property
    def needle_count(self) -> int:
        """How many distinct forms are searched for."""
        return len(self._needles)

    def stream(self) -> MaskStream:
        """A fresh streaming masker (one per output stream)."""
        return MaskStream(self)

    def mask_bytes(self, data: bytes) -> bytes:
        """Mask a finished byte string (identical to streaming it in any chunks)."""
        stream = self.stream()
        return stream.feed(data) + stream.flush()

    def mask(self, text: str) -> str:
        """Mask a finished text."""
        return self.mask_bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")

    def mask_json(self, value: Any) -> Any:
        """Mask a JSON-like structure one string at a time (dict keys too), keeping its shape.

        Masking each value rather than the serialised document keeps a short value from replacing a year
        or a duration elsewhere and keeps the document valid.
        """
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, bytes):
            return self.mask_bytes(value)
        if isinstance(value, dict):
            return {self.mask_json(k): self.mask_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.mask_json(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.mask_json(v) for v in value)
        return value

    def leaks(self, data: bytes) -> list[str]:
        """Keys whose value still occurs in ``data`` in any form (the final rescan of an artifact)."""
        found: set[str] = set()
        for idx, _span in self._hits(_view(data), final=True):
            found.update(self._keys[idx])
        return sorted(found)

    # -- the scanner --------------------------------------------------------------------------------------

    def _unfinished(self, data: bytes, start: int) -> int:
        """Where an unfinished escape sequence at the end of ``data[start:]`` begins (``len(data)``: none).

        It is held, and the rest is scanned without it: its bytes would otherwise count as text and break a
        value that continues after it. It starts at the last ESC, or at the one before when that last ESC may
        begin an OSC's closing ESC \\.
        """
        esc = data.rfind(b"\x1b", max(start, len(data) - _SEQUENCE_MAX))
        if esc < 0:
            return len(data)
        if esc == len(data) - 1:
            before = data.rfind(b"\x1b", max(start, len(data) - _SEQUENCE_MAX), esc)
            if before >= 0 and _UNFINISHED_RE.match(data, before):
                esc = before
        return esc if _UNFINISHED_RE.match(data, esc) else len(data)

    def _open_tail(self, data: bytes, start: int) -> tuple[int, int] | None:
        """The span (from ``start`` on) of a tail of ``data`` that is a prefix of at least
        :data:`_PREFIX_LEN` normalised bytes of some form (counted from where that prefix begins), up to
        its last byte in the normalised view (whitespace after it is not part of it), if there is one."""
        if self._prefix_ac is None:
            return None
        norm = _view(data).norm
        partial = self._partial(norm)
        if partial is None or len(norm) - partial < _PREFIX_LEN:
            return None
        pos = max(_tail_position(data, len(norm) - partial), start)
        end = _tail_position(data, 1) + 1
        return (pos, end) if pos < end else None

    def _process(
        self, data: bytes, start: int, final: bool, early: int | None = None, tail: tuple[int, int] | None = None
    ) -> tuple[bytes, int]:
        """Mask ``data[start:]``; returns the output and how far (into ``data``) it reaches.

        ``data[early:start]`` (``early`` <= ``start``) was shown before it was decided (an idle release):
        matches that begin there are still found and their part from ``start`` on is masked. ``tail``: a
        span masked as well (a released possible start of a secret).
        """
        early = start if early is None else early
        if not final:
            data = data[: self._unfinished(data, start)]
        spans, hold = self._literal_spans(data, start, final, early)
        named, pattern_hold = self._pattern_spans(data, start, final, early)
        if tail is not None:
            spans.append(tail)
        hold = max(min(hold, pattern_hold), start)
        if not spans and not named:
            # The usual chunk: nothing to mask, at most a possible start held back (outside any sequence).
            if start < hold < len(data):
                hold = _before_sequence(data, hold)
            return data[start:hold], hold
        spans.extend(span for _, _, span in named)
        regions = _merge(spans)
        for a, b in regions:
            if a < hold < b and b - a > _PATTERN_HOLD:
                hold = b  # a match too long to hold is decided: what may start inside it goes with it
        moved = True
        while moved:
            moved = False
            for a, b in regions:
                if a < hold < b and hold > start:  # a marker is never split: hold its whole region back
                    hold, moved = max(a, start), True
            for _, ts, (a, _b) in named:
                if ts < hold <= a and hold > start:  # only a held trigger lets the next round find it again
                    hold, moved = max(ts, start), True
            # Never cut inside an escape sequence (a trigger can stand in an OSC's hyperlink): the next
            # round must parse its bytes the way a one-shot pass does.
            outside = _before_sequence(data, hold) if start < hold < len(data) else hold
            if outside < hold:
                hold, moved = outside, True
        out = bytearray()
        pos = start
        for a, b in regions:
            if a >= hold:
                break
            out += data[pos:a]
            out += MARKER
            pos = b
        out += data[pos:hold]
        return bytes(out), hold

    def _literal_spans(self, data: bytes, start: int, final: bool, early: int) -> tuple[list[tuple[int, int]], int]:
        spans: list[tuple[int, int]] = []
        hold = len(data)
        if self._finder is None or self._prefix_ac is None:
            return spans, hold
        where = _view(data)
        norm = where.norm
        for idx, (a, b) in self._hits(where, final):
            # A whole-word hit that began in what was already sent was judged (and refused) by the round
            # that sent it, with its left edge in view; with less context now, it is not judged again.
            if b > start and (a >= early or not self._whole_word[idx]):
                spans.append((max(a, start), b))
        if not final:
            partial = self._partial(norm)
            if partial is not None:
                hold = _tail_position(data, len(norm) - partial)
        return spans, hold

    def _hits(self, where: _View | _Blocks, final: bool) -> list[tuple[int, tuple[int, int]]]:
        """``(needle index, original span)`` of every occurrence in the view and in its OSC bodies."""
        if self._finder is None:
            return []
        found = self._finder.find(where.norm)
        bodies = where.osc_bodies()
        if not found and not bodies:
            return []
        out: list[tuple[int, tuple[int, int]]] = []
        views: list[tuple[int, _View | _Blocks, bool, list[tuple[int, int, int]]]] = [(0, where, final, found)]
        # An OSC body is complete (an unfinished one is held back whole), so its right edge is decided.
        for a, b in bodies:
            body = _View(where.data[a:b])
            views.append((a, body, True, self._finder.find(body.norm)))
        for offset, view, closed, matches in views:
            for idx, ns, ne in matches:
                a, b = view.span(ns, ne)
                if self._whole_word[idx]:
                    after = view.word_after(b)
                    if (after is None and not closed) or after or view.word_before(a):
                        continue  # an undecided right edge is held back by the partial-match rule
                out.append((idx, (a + offset, b + offset)))
        return out

    def _partial(self, norm: bytes) -> int | None:
        """Earliest index from which the end of ``norm`` could still grow into a match."""
        assert self._prefix_ac is not None
        n = len(norm)
        lo = max(0, n - self._maxlen)
        found = self._prefix_ac.find_matches_as_indexes(norm[lo:], overlapping=True)
        if found:
            for i in sorted({lo + s for _, s, _ in found}):
                if self._open_prefix(norm[i:]):
                    return i
        short = self._short_open
        for i in range(max(lo, n - _PREFIX_LEN + 1), n):
            if norm[i:] in short:
                return i
        return None

    def _open_prefix(self, tail: bytes) -> bool:
        """Whether ``tail`` is a proper prefix of a needle, or a whole-word needle whose edge is unknown."""
        j = bisect.bisect_left(self._needles, tail)
        for k in (j, j + 1):
            if k >= len(self._needles) or not self._needles[k].startswith(tail):
                return False
            if len(self._needles[k]) > len(tail) or self._whole_word[k]:
                return True
        return False

    def _pattern_spans(
        self, data: bytes, start: int, final: bool, early: int
    ) -> tuple[list[tuple[str, int, tuple[int, int]]], int]:
        """Shape-pattern matches as ``(name, trigger position, span)`` and the hold point they need."""
        spans: list[tuple[str, int, tuple[int, int]]] = []
        hold = len(data)
        if self._trigger_ac is None:
            return spans, hold
        for idx, rel, _ in self._trigger_ac.find_matches_as_indexes(memoryview(data)[early:]):
            ts = rel + early
            for p in self._trigger_patterns[idx]:
                if not final and len(data) - ts <= _PATTERN_HOLD and p.viable.match(data, ts):
                    hold = min(hold, ts)
                    continue
                found = p.span(data, ts)
                if found is not None and found[1] > max(found[0], start):
                    spans.append((p.name, ts, (max(found[0], start), found[1])))
        if not final:
            # The earliest start of a tail that is a proper prefix of a trigger (a trie regex: one C call).
            tail = self._trigger_tail.search(data, max(early, len(data) - self._trigger_max + 1))
            if tail is not None:
                hold = min(hold, tail.start())
        return spans, hold
