"""How Runme reads a Markdown file: fence attributes, generated cell names, front matter, ``$`` prompts.

Pure functions, written from Runme's documented behaviour (its docs, fixtures and tests), so that a file
annotated for Runme gets the same cells, names and selection here:

* attributes: the text between the first ``{`` of the info string and the first ``}`` after it is read as
  a JSON object (every value becomes a string: ``true`` -> ``"true"``), else as HTML-style ``key=value``
  words where a bare word or ``key=`` has the empty value; this never fails;
* names: an explicit ``name`` wins; otherwise the first line of code that is not a comment is cut at its
  first ``=``, at 32 bytes and after two words, lower-cased and reduced to ``[a-z0-9]`` with ``-`` between
  the words; a name seen before gets ``-2``, ``-3``, ... (explicit names count too);
* front matter: ``---`` or ``+++`` delimited (YAML, else JSON, else TOML), or a JSON object, after any
  leading blank lines;
* prompts: ``$ `` at the start of a shell line is the reader's prompt, not part of the command.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from runbook_exec.doc.options import unquote

# strconv.ParseBool's words: anything else is "not set" and the key's default applies.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

# Languages a cell runs as shell text (Runme: no language, or a shell's name).
SHELL_LANGUAGES = frozenset({"", "sh", "bash", "shell", "zsh", "shellscript", "ksh", "fish", "sh-raw", "bat"})
# Languages whose cells run in the session itself (the others of SHELL_LANGUAGES as their own process).
SESSION_LANGUAGES = frozenset({"", "sh", "bash", "shell", "shellscript", "sh-raw", "bat"})
NAME_LIMIT = 32


def go_bool(value: str | None) -> bool | None:
    """``strconv.ParseBool``: True / False, or None when ``value`` is not one of its words."""
    if value is None:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


@dataclass(frozen=True)
class Attributes:
    """A fence's attributes as Runme reads them: string values in source order, and the form used."""

    items: tuple[tuple[str, str], ...] = ()
    format: str = "none"  # "none" | "json" | "html"

    def get(self, key: str) -> str | None:
        found = None
        for name, value in self.items:
            if name == key:
                found = value  # the last one wins, as in a map
        return found


def extract(info: str) -> str | None:
    """The ``{...}`` part of an info string: from the first ``{`` not followed by ``}`` to the first ``}``."""
    start = next((i for i, ch in enumerate(info) if ch == "{" and info[i + 1 : i + 2] != "}"), -1)
    stop = info.find("}")
    if start < 0 or stop < 0 or stop < start:
        return None
    return info[start : stop + 1].strip()


def _json_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _html_words(body: str) -> list[str]:
    """Split on whitespace; a quoted value stays one word (Runme splits on spaces alone, see docs/syntax.md)."""
    words: list[str] = []
    for match in re.finditer(r"""(?:[^\s"']+|"(?:[^"\\]|\\.)*"?|'[^']*'?)+""", body):
        words.append(match.group(0))
    return words


def parse_attributes(info: str) -> Attributes:
    """Read the attributes of a fence info string the way Runme does. Never raises."""
    raw = extract(info)
    if raw is None:
        return Attributes()
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return Attributes(tuple((str(k), _json_value(v)) for k, v in data.items()), "json")
    items: list[tuple[str, str]] = []
    for word in _html_words(raw.strip("{}")):
        key, _, value = word.partition("=")
        if key:
            items.append((key, unquote(value)))
    return Attributes(tuple(items), "html")


def language(info: str) -> str:
    """The fence's language: the info string up to its first space, unless that is the attribute list."""
    text = info.strip()
    word = text.split(" ", 1)[0] if text else ""
    raw = extract(text) or ""
    if not word or raw.startswith(word):
        return ""
    if "{" in word:  # "sh{name=x}": the attributes are glued to the language
        word = word.split("{", 1)[0]
    return word.lower()


# -- names --------------------------------------------------------------------------------------------


def code_lines(source: str) -> list[str]:
    """A cell's lines as Runme's name generator sees them: leading ``$`` removed, trailing space trimmed."""
    lines = source.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.lstrip("$").rstrip() for line in lines]


def first_command(lines: Iterable[str]) -> str:
    """The first line that is not empty or a comment (the text before a ``#``), else the first line."""
    lines = list(lines)
    for line in lines:
        text = line.strip().split("#", 1)[0]
        if text:
            return text.rstrip()
    return lines[0] if lines else ""


def sanitize_name(text: str) -> str:
    """Runme's generated name of a first command line (``export FOO=1`` -> ``export-foo``)."""
    equals = text.find("=")
    if equals > 0:
        return sanitize_name(text[:equals])
    # The cut is at 32 bytes; a character split by it is dropped like any other non-ASCII one.
    text = text.encode("utf-8")[:NAME_LIMIT].decode("utf-8", "ignore")
    words = text.split(" ")
    text = " ".join(words[:2]) if len(words) > 1 else words[0]
    out: list[str] = []
    for ch in text.lower():
        if ch == " " and out:
            out.append("-")
        elif "0" <= ch <= "9" or "a" <= ch <= "z":
            out.append(ch)
    return "".join(out)


def generated_name(source: str) -> str:
    """The name Runme gives a cell without an explicit one (before de-duplication)."""
    lines = code_lines(source)
    return sanitize_name(first_command(lines)) if lines else ""


@dataclass
class NameResolver:
    """Runme's de-duplication: the n-th use of a name (explicit or generated) becomes ``name-n``."""

    counts: dict[str, int] = field(default_factory=dict)

    def get(self, name: str) -> str:
        self.counts[name] = self.counts.get(name, 0) + 1
        count = self.counts[name]
        return name if count == 1 else f"{name}-{count}"


# -- cell text ------------------------------------------------------------------------------------------

_PROMPT = re.compile(r"(?m)^\$(?:[ \t]+|$)")


def strip_prompts(source: str) -> str:
    """Drop a reader's ``$ `` prompt at the start of each line (``$HOME/bin/x`` is left alone)."""
    return _PROMPT.sub("", source) if "$" in source else source


def ignored(attrs: Attributes, lang: str) -> bool:
    """Runme's ``transform=false`` / ``ignore=true`` (and mermaid, unless told otherwise): never a cell."""
    transform = go_bool(attrs.get("transform"))
    if transform is not None:
        return not transform
    ignore = go_bool(attrs.get("ignore"))
    if ignore is not None:
        return ignore
    return lang == "mermaid"


def tags(value: str | None) -> tuple[str, ...]:
    """Comma-separated tags (``category`` and ``tag`` alike), trimmed, empty ones dropped."""
    return tuple(t.strip() for t in (value or "").split(",") if t.strip())


# -- front matter ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontMatter:
    """Front matter found by Runme's rules: its lines (1-based, inclusive), format and data or error."""

    first_line: int
    last_line: int
    format: str  # "yaml" | "json" | "toml"
    data: dict[str, Any] | None
    error: str | None = None
    error_line: int = 0


def _opening(text: str) -> tuple[int, str] | None:
    """Offset and kind ("-", "+", "{") of the front matter's first character, or None."""
    for i, ch in enumerate(text):
        if ch in " \t\r\n\ufeff":
            continue
        if ch == "-" and text.startswith("--8<", i):
            return None
        if ch in "-+":
            return (i, ch) if text.startswith(ch * 3, i) else None
        if ch == "{" and text[i + 1 : i + 2] not in ("{", "%"):
            return i, "{"
        return None
    return None


def _json_end(text: str, start: int) -> int | None:
    level, quoted, i = 0, False, start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "{":
            level += 1
        elif not quoted and ch == "}":
            level -= 1
            if level == 0:
                return i
        i += 1
    return None


def split_front_matter(text: str) -> FrontMatter | None:
    """Find and read the front matter of LF-normalised ``text`` as Runme does; None when there is none."""
    opening = _opening(text)
    if opening is None:
        return None
    start, kind = opening
    first_line = text.count("\n", 0, start) + 1
    if kind == "{":
        end = _json_end(text, start)
        if end is None:
            return FrontMatter(first_line, text.count("\n") + 1, "json", None, "JSON front matter is never closed")
        last_line = text.count("\n", 0, end) + 1
        return _load(text[start : end + 1], None, first_line, last_line)
    lines = text.split("\n")
    opener = first_line - 1
    for index in range(opener + 1, len(lines)):
        if lines[index].startswith(kind * 3):
            inner = "\n".join(lines[opener + 1 : index])
            return _load(text[start:], inner, first_line, index + 1)
    return FrontMatter(first_line, len(lines), "yaml", None, f"front matter opened with {kind * 3} is never closed")


def _load(raw: str, inner: str | None, first_line: int, last_line: int) -> FrontMatter:
    """YAML, then JSON, then TOML, as Runme tries them; the first error is the one reported."""
    first_error: tuple[str, int] | None = None
    if inner is not None:
        try:
            data = yaml.safe_load(inner) if inner.strip() else {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = first_line + 1 + (mark.line if mark is not None else 0)
            first_error = (str(getattr(exc, "problem", None) or "invalid YAML"), line)
        else:
            if data is None or isinstance(data, dict):
                return FrontMatter(first_line, last_line, "yaml", dict(data or {}))
            first_error = ("front matter must be a mapping", first_line)
    for candidate in (raw if inner is None else inner,):
        try:
            data = json.loads(candidate)
        except ValueError as exc:
            if first_error is None:
                first_error = (f"invalid JSON: {exc}", first_line)
        else:
            if isinstance(data, dict):
                return FrontMatter(first_line, last_line, "json", data)
    if inner is not None:
        import tomllib  # noqa: PLC0415 - only TOML front matter needs it; every parse of a runbook imports this module

        try:
            return FrontMatter(first_line, last_line, "toml", tomllib.loads(inner))
        except tomllib.TOMLDecodeError:
            pass
    message, line = first_error or ("cannot be read", first_line)
    return FrontMatter(first_line, last_line, "yaml", None, message, line)


@dataclass(frozen=True)
class DocumentSettings:
    """The front-matter keys Runme gives a meaning (``runme``, ``shell``, ``cwd``, ``category``/``tag``, ...)."""

    shell: str | None = None
    cwd: str | None = None
    tags: tuple[str, ...] = ()
    skip_prompts: bool = False
    runme_id: str | None = None
    runme_version: str | None = None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def document_settings(meta: dict[str, Any]) -> DocumentSettings:
    """Runme's front-matter keys, read as leniently as Runme reads them (other keys are ignored)."""
    block = meta.get("runme")
    runme = block if isinstance(block, dict) else {}
    skip = meta.get("skipPrompts")
    skip_prompts = skip if isinstance(skip, bool) else bool(go_bool(_text(skip)) or str(skip).lower() in ("yes", "on"))
    return DocumentSettings(
        shell=_text(meta.get("shell")) or None,
        cwd=_text(meta.get("cwd")) or None,
        tags=tags(_text(meta.get("tag"))) + tags(_text(meta.get("category"))),
        skip_prompts=skip_prompts,
        runme_id=_text(runme.get("id")),
        runme_version=_text(runme.get("version")),
    )
