"""The one options grammar for fence info strings and headings, used by the runner, ``check`` and the site.

An info string is a language, then optionally an attribute list in attr_list form::

    bash {#compose-up .exec timeout=900 when=failure title="a b"}

Runme forms are read too: ``{ name=x }`` (the name is the id) and JSON objects ``{"name": "x"}``. Bare
words are an error, because they break the site's rendering.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

RUNNABLE_LANGUAGES = frozenset({"bash", "sh", "shell"})
WHEN_VALUES = ("success", "failure", "always")

# Keys with a meaning for the runner.
RUNNER_KEYS = frozenset({"timeout", "retries", "interval", "expect", "when", "cwd"})
# Runme's own keys: accepted so Runme-annotated files run unchanged.
RUNME_KEYS = frozenset(
    {
        "name",
        "id",
        "interactive",
        "excludeFromRunAll",
        "terminalRows",
        "background",
        "cwd",
        "tag",
        "category",
        "closeTerminalOnSuccess",
        "mimeType",
        "promptEnv",
        "interpreter",
        "skipPrompts",
        "transform",
        "ignore",
    }
)
# Keys the site's highlighter understands (pymdownx.highlight / superfences).
SITE_KEYS = frozenset({"title", "hl_lines", "linenums", "title_mode"})
KNOWN_KEYS = RUNNER_KEYS | RUNME_KEYS | SITE_KEYS

_BOOL_KEYS = frozenset({"interactive", "excludeFromRunAll", "background", "closeTerminalOnSuccess"})
_TRAILING_ATTRS = re.compile(r"\s*\{([^{}]*)\}\s*$")
_NAME = re.compile(r"^[^\s{}#.=\"']+$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_:-]*$")


@dataclass(frozen=True)
class Attrs:
    """An attribute list: ``#id``, ``.classes`` and ``key=value`` options in source order."""

    id: str | None = None
    classes: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    style: str = "none"  # "none" | "attr_list" | "json"

    def get(self, key: str, default: str | None = None) -> str | None:
        for name, value in self.options:
            if name == key:
                return value
        return default

    def has_class(self, name: str) -> bool:
        return name in self.classes


@dataclass(frozen=True)
class Info:
    """A parsed fence info string."""

    lang: str
    attrs: Attrs
    error: str | None = None  # why the attribute list could not be read


@dataclass(frozen=True)
class CellOptions:
    """Validated runner options of one cell."""

    timeout: float | None = None
    retries: int = 0
    interval: float = 0.0
    expect: int = 0
    when: str = "success"
    cwd: str | None = None
    exclude_from_run_all: bool = False
    tags: tuple[str, ...] = ()
    interactive: bool | None = None
    background: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)


class AttrSyntaxError(ValueError):
    """An attribute list that cannot be read."""


def _tokens(body: str) -> list[str]:
    """Split an attribute list body on whitespace, keeping quoted values whole."""
    if '"' not in body and "'" not in body:
        return body.split()  # the common case: str.split() splits on the same (str.isspace) whitespace
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        if body[i].isspace():
            i += 1
            continue
        start = i
        while i < n and not body[i].isspace():
            if body[i] in "\"'":
                quote = body[i]
                i += 1
                while i < n and body[i] != quote:
                    i += 2 if body[i] == "\\" and quote == '"' else 1
                if i >= n:
                    raise AttrSyntaxError(f"unterminated quote in {{{body}}}")
            i += 1
        out.append(body[start:i])
    return out


def unquote(value: str) -> str:
    """A value without its surrounding quotes (inside double quotes, ``\\"`` and ``\\\\`` are escapes)."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        inner = value[1:-1]
        return re.sub(r'\\(["\\])', r"\1", inner) if value[0] == '"' else inner
    return value


def parse_attr_list(body: str) -> Attrs:
    """Parse the inside of ``{...}``; raise :class:`AttrSyntaxError` with a reason."""
    stripped = body.strip()
    if stripped.startswith('"'):
        return _parse_json("{" + body + "}")
    ident: str | None = None
    classes: list[str] = []
    options: list[tuple[str, str]] = []
    for token in _tokens(body):
        if token.startswith("#"):
            name = token[1:]
            if not _NAME.match(name):
                raise AttrSyntaxError(f"bad id {token!r}")
            if ident is not None and ident != name:
                raise AttrSyntaxError(f"two ids: #{ident} and {token}")
            ident = name
        elif token.startswith("."):
            name = token[1:]
            if not _NAME.match(name):
                raise AttrSyntaxError(f"bad class {token!r}")
            classes.append(name)
        elif "=" in token:
            key, _, raw = token.partition("=")
            if not _KEY.match(key):
                raise AttrSyntaxError(f"bad key {key!r}")
            if raw == "":
                raise AttrSyntaxError(f"{key}= has no value")
            value = unquote(raw)
            if key in ("class",):
                classes.extend(value.split())
            elif key == "id":
                ident = value
            else:
                options.append((key, value))
        else:
            raise AttrSyntaxError(f"bare word {token!r} (write #id, .class or key=value)")
    return Attrs(id=ident, classes=tuple(classes), options=tuple(options), style="attr_list")


def _parse_json(text: str) -> Attrs:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AttrSyntaxError(f"bad JSON attributes: {exc.msg}") from None
    if not isinstance(data, dict):
        raise AttrSyntaxError("JSON attributes must be an object")
    options: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, bool):
            options.append((str(key), "true" if value else "false"))
        elif isinstance(value, (str, int, float)):
            options.append((str(key), str(value)))
        else:
            raise AttrSyntaxError(f"JSON attribute {key!r} must be a string, number or boolean")
    # Runme's "id" is its own generated identifier; the cell's name is what people target.
    return Attrs(id=None, classes=(), options=tuple(options), style="json")


def parse_info(info: str) -> Info:
    """Split a fence info string into language and attributes. Never raises."""
    text = info.strip()
    if not text:
        return Info(lang="", attrs=Attrs())
    if text.startswith("{"):
        lang_part, attr_part = "", text
    else:
        lang_part, _, attr_part = text.partition(" ")
        if "{" in lang_part:
            lang_part, brace, rest = lang_part.partition("{")
            attr_part = brace + rest + (" " + attr_part if attr_part else "")
    lang = lang_part.strip().lower()
    attr_part = attr_part.strip()
    if not attr_part:
        return Info(lang=lang, attrs=Attrs())
    if not (attr_part.startswith("{") and attr_part.endswith("}")):
        return Info(lang=lang, attrs=Attrs(), error=f"text after the language must be one {{...}} list: {attr_part!r}")
    body = attr_part[1:-1]
    try:
        if body.strip().startswith('"') or body.strip() == "":
            attrs = _parse_json(attr_part) if body.strip() else Attrs(style="attr_list")
        else:
            attrs = parse_attr_list(body)
    except AttrSyntaxError as exc:
        return Info(lang=lang, attrs=Attrs(), error=str(exc))
    if lang == "" and attrs.classes:
        # Python-Markdown's {.bash #id} form: the first class is the language.
        lang, classes = attrs.classes[0].lower(), attrs.classes[1:]
        attrs = Attrs(id=attrs.id, classes=classes, options=attrs.options, style=attrs.style)
    return Info(lang=lang, attrs=attrs)


def split_heading(text: str) -> tuple[str, Attrs | None, str | None]:
    """Split ``Title {#id .class}`` into the title and its attribute list. Never raises."""
    match = _TRAILING_ATTRS.search(text)
    if not match:
        return text, None, None
    title = text[: match.start()]
    try:
        return title, parse_attr_list(match.group(1)), None
    except AttrSyntaxError as exc:
        return title, None, str(exc)


def cell_id(attrs: Attrs) -> str | None:
    """The id a person targets: ``#id``, else Runme's ``name``."""
    return attrs.id or attrs.get("name")


def _number(key: str, value: str, minimum: float, problems: list[str]) -> float | None:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if math.isnan(number) or math.isinf(number) or number < minimum:
        low = "positive" if minimum > 0 else "0 or more"
        problems.append(f"{key}={value!r} must be a number, {low}")
        return None
    return number


def _integer(key: str, value: str, low: int, high: int, problems: list[str]) -> int | None:
    if not re.fullmatch(r"[0-9]+", value) or not low <= int(value) <= high:
        problems.append(f"{key}={value!r} must be a whole number from {low} to {high}")
        return None
    return int(value)


# Shared by every cell without options (frozen, and its ``extra`` mapping is only read): one construction
# instead of one per cell.
_DEFAULT_OPTIONS = CellOptions()

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def cell_options(attrs: Attrs, *, lenient: bool = False) -> tuple[CellOptions, list[str]]:
    """Validate a cell's options. Returns the options and a list of problems (empty when valid).

    ``lenient`` (Runme mode): the problems are notes, not errors; an unknown key is kept, a value that
    cannot be used is ignored, and booleans are read as Runme reads them (``1``, ``t``, ``True``, ...).
    """
    if not attrs.options:
        return _DEFAULT_OPTIONS, []  # the common case: every default, nothing to check
    problems: list[str] = []
    seen: set[str] = set()
    values: dict[str, str] = {}
    kept: dict[str, str] = {}
    for key, value in attrs.options:
        if key not in KNOWN_KEYS:
            hint = _closest(key, KNOWN_KEYS)
            suffix = f" (did you mean {hint!r}?)" if hint else ""
            problems.append(f"unknown key {key!r}" + (f"{suffix}: kept, not used" if lenient else suffix))
            kept[key] = value
            continue
        if key in seen and not lenient:
            problems.append(f"key {key!r} given twice")
        seen.add(key)
        values[key] = value
    if lenient:
        return _lenient_options(values, kept, problems)
    timeout, interval, retries, expect = _numbers(values, problems)
    when = values.get("when", "success")
    if when not in WHEN_VALUES:
        problems.append(f"when={when!r} must be one of {', '.join(WHEN_VALUES)}")
    for key in _BOOL_KEYS & values.keys():
        if values[key].lower() not in ("true", "false"):
            problems.append(f"{key}={values[key]!r} must be true or false")
    if "cwd" in values and not values["cwd"].strip():
        problems.append("cwd= must not be empty")
    tags = tuple(t for t in re.split(r"[,\s]+", values.get("tag", "") + "," + values.get("category", "")) if t)
    interactive = values["interactive"].lower() == "true" if "interactive" in values else None
    options = CellOptions(
        timeout=timeout,
        retries=retries or 0,
        interval=interval or 0.0,
        expect=expect or 0,
        when=when if when in WHEN_VALUES else "success",
        cwd=values.get("cwd"),
        exclude_from_run_all=values.get("excludeFromRunAll", "false").lower() == "true",
        tags=tags,
        interactive=interactive,
        background=values.get("background", "false").lower() == "true",
        extra={k: v for k, v in values.items() if k not in RUNNER_KEYS},
    )
    return options, problems


def _numbers(
    values: Mapping[str, str], problems: list[str]
) -> tuple[float | None, float | None, int | None, int | None]:
    """``timeout``, ``interval``, ``retries`` and ``expect`` (or their defaults); a bad one is None, with a problem."""
    timeout = _number("timeout", values["timeout"], 1e-9, problems) if "timeout" in values else None
    interval = _number("interval", values["interval"], 0, problems) if "interval" in values else 0.0
    retries = _integer("retries", values["retries"], 0, 1000, problems) if "retries" in values else 0
    expect = _integer("expect", values["expect"], 0, 255, problems) if "expect" in values else 0
    return timeout, interval, retries, expect


def _lenient_options(
    values: dict[str, str], kept: dict[str, str], problems: list[str]
) -> tuple[CellOptions, list[str]]:
    """Runme mode: read what can be read, note the rest (a Runme file is never refused for its attributes)."""
    notes = list(problems)

    def flag(key: str) -> bool | None:
        value = values.get(key)
        if value is None:
            return None
        if value in _GO_TRUE:
            return True
        if value in _GO_FALSE:
            return False
        notes.append(f"{key}={value!r} is not true or false: ignored")
        return None

    number_notes: list[str] = []
    timeout, interval, retries, expect = _numbers(values, number_notes)
    when = values.get("when", "success")
    if when not in WHEN_VALUES:
        number_notes.append(f"when={when!r} must be one of {', '.join(WHEN_VALUES)}")
        when = "success"
    cwd = values.get("cwd")
    if cwd is not None and not cwd.strip():
        cwd = None
    notes += [f"{note}: ignored" for note in number_notes]
    tags = tuple(t.strip() for key in ("category", "tag") for t in values.get(key, "").split(",") if t.strip())
    extra = {k: v for k, v in values.items() if k not in RUNNER_KEYS}
    extra.update(kept)
    options = CellOptions(
        timeout=timeout,
        retries=retries or 0,
        interval=interval or 0.0,
        expect=expect or 0,
        when=when,
        cwd=cwd,
        exclude_from_run_all=flag("excludeFromRunAll") is True,
        tags=tags,
        interactive=flag("interactive"),
        background=flag("background") is True,
        extra=extra,
    )
    return options, notes


def _closest(word: str, choices: frozenset[str] | set[str] | list[str]) -> str | None:
    import difflib  # noqa: PLC0415 - only a misspelt key needs it; every parse of a runbook imports this module

    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return found[0] if found else None


closest = _closest
