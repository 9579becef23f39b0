"""Text damaged by copying or encoding (``RX601``–``RX604``).

* U+FFFD, the replacement character a decoder leaves for bytes it could not read;
* mojibake: UTF-8 read as Latin-1 / Windows-1252 (``Ã©`` for ``é``, ``ì˜`` for a Hangul syllable,
  ``â€™`` for ``’``), found as a character pair whose bytes form the start of a UTF-8 sequence;
* an ellipsis inside a word (``발...flight``): a preview or a copy cut the text and joined the ends;
* a bare ``...`` / ``…`` word inside an executable cell, where it would be run as a command argument.
"""

from __future__ import annotations

import re

from runbook_exec.doc.document import Runbook
from runbook_exec.lint.findings import Finding, cell_position, finding

_LETTER = r"[^\W\d_]"
_IN_WORD = re.compile(rf"{_LETTER}(?:\.\.\.|…){_LETTER}")
_BARE = re.compile(r"(?:(?<=\s)|^)(?:\.\.\.|…)(?=\s|$)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+\1")


def _cp1252_high() -> dict[str, int]:
    """The characters above U+00FF that Windows-1252 decodes bytes 0x80-0x9F to (``€``, ``…``, ``™``, ...)."""
    table = {}
    for n in range(0x80, 0xA0):
        try:
            table[bytes([n]).decode("cp1252")] = n
        except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: not mapped
            continue
    return table


_CP1252_HIGH = _cp1252_high()
# A character whose byte (Latin-1 / Windows-1252) starts a UTF-8 sequence (0xC2-0xF4), then one whose byte
# continues it (0x80-0xBF): U+0080-U+00BF, or one of Windows-1252's characters for 0x80-0x9F.
_MOJIBAKE = re.compile("[\u00c2-\u00f4][\u0080-\u00bf" + re.escape("".join(sorted(_CP1252_HIGH))) + "]")


def _byte(ch: str) -> int | None:
    """The byte a Windows-1252 / Latin-1 decoder turned into ``ch``, if any."""
    code = ord(ch)
    if code < 0x80:
        return None
    if code <= 0xFF:
        return code
    return _CP1252_HIGH.get(ch)


def mojibake_at(line: str) -> int | None:
    """Index of the first mojibake pair in ``line``, or None."""
    found = _MOJIBAKE.search(line)
    return found.start() if found else None


def check_text(book: Runbook) -> list[Finding]:
    """Every damaged-text finding in ``book``."""
    lines = book.text.split("\n")
    in_fence = [False] * (len(lines) + 2)
    for cell in book.cells:
        for row in range(cell.line, cell.line + cell.source.count("\n") + 2):
            if row < len(in_fence):
                in_fence[row] = True
    out: list[Finding] = []
    for lineno, line in enumerate(lines, start=1):
        index = line.find("\ufffd")
        if index >= 0:
            out.append(
                finding(
                    book.path,
                    lineno,
                    index + 1,
                    "RX601",
                    "replacement character U+FFFD: the text was damaged by a wrong decoding",
                )
            )
        bad = mojibake_at(line)
        if bad is not None:
            pair = line[bad : bad + 2]
            fixed = _repair(line[bad:])
            hint = f" (probably {fixed!r})" if fixed else ""
            out.append(
                finding(
                    book.path,
                    lineno,
                    bad + 1,
                    "RX602",
                    f"mojibake {pair!r}: UTF-8 text read as Latin-1/Windows-1252{hint}",
                )
            )
        if not in_fence[lineno]:
            m = _ellipsis_in_word(line)
            if m:
                word = _word_around(line, m.start() + 1)
                out.append(
                    finding(
                        book.path,
                        lineno,
                        m.start() + 2,
                        "RX603",
                        f"ellipsis inside the word {word!r}: text cut by a preview or a copy",
                    )
                )
    for cell in book.cells:
        if not cell.executable:
            continue
        source = cell.source.split("\n")
        for row, text in enumerate(source):
            code = text.split(" #", 1)[0] if not text.lstrip().startswith("#") else ""
            m = _BARE.search(code) or (re.search("…", code) if "…" in code else None)
            if m:
                at, col = cell_position(lines, cell.line, source, row, m.start())
                out.append(
                    finding(
                        book.path,
                        at,
                        col,
                        "RX604",
                        "an ellipsis in an executable cell would be run as an argument: "
                        "the command was shortened (write it out in full)",
                    )
                )
    return out


def _ellipsis_in_word(line: str) -> re.Match[str] | None:
    """In prose any ``a...b``; inside a code span only a mixed-script one (``main...feature`` is git)."""
    prose = _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
    found = _IN_WORD.search(prose)
    if found:
        return found
    for span in _CODE_SPAN.finditer(line):
        for m in _IN_WORD.finditer(line, span.start(), span.end()):
            text = m.group(0)
            if text[0].isascii() != text[-1].isascii():
                return m
    return None


def _word_around(line: str, index: int) -> str:
    start = index
    while start > 0 and not line[start - 1].isspace() and line[start - 1] not in "`\"'(":
        start -= 1
    end = index
    while end < len(line) and not line[end].isspace() and line[end] not in "`\"')":
        end += 1
    return line[start:end]


def _repair(text: str) -> str | None:
    raw = bytearray()
    for ch in text:
        b = _byte(ch)
        if b is None:
            if ord(ch) < 0x80:
                raw.append(ord(ch))
                continue
            break
        raw.append(b)
        if len(raw) > 24:
            break
    decoded = bytes(raw).decode("utf-8", "ignore")
    word = decoded.split()[0] if decoded.split() else ""
    return word if word and any(ord(c) > 0x7F for c in word) else None
