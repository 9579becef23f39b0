"""Turn a parsed runbook and a selection into a validated plan. Nothing runs here.

Every problem is collected and reported at once (one line each, ``path:line: message``), so an operator
fixes the command line and the file in one go instead of one error per attempt.
"""

from __future__ import annotations

import os
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from runbook_exec.doc import languages, prompt_env
from runbook_exec.doc.document import Cell, Runbook, VarSpec
from runbook_exec.doc.options import closest
from runbook_exec.errors import Problem, RunbookError
from runbook_exec.ops.envfile import duplicates, env_file_entries, sample_keys
from runbook_exec.records.release_log import last_successful
from runbook_exec.secrets import masking
from runbook_exec.secrets.names import is_secret_name

DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Selection:
    """What the operator asked to run."""

    sections: tuple[str, ...] = ()
    cells: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    start: str | None = None  # --from

    def describe(self) -> tuple[str, ...]:
        parts = [f"section:{s}" for s in self.sections] + [f"cell:{c}" for c in self.cells]
        parts += [f"tag:{t}" for t in self.tags]
        if self.start:
            parts.append(f"from:{self.start}")
        return tuple(parts) or ("all",)


@dataclass(frozen=True)
class Options:
    """Run-time inputs from the command line that the plan validates."""

    env_file: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    allow_short_secrets: bool = False
    release_log: str | None = None
    no_release_log: bool = False
    assume_yes: bool = False
    interactive: bool = False  # a person can answer confirmations on a TTY
    environ: Mapping[str, str] | None = None
    target: str | None = None  # --target: release_log variables come from this target's records only


@dataclass(frozen=True)
class Prompt:
    """A Runme placeholder (``export NAME="..."``) to ask the operator about before the run."""

    cell: int  # index of the cell
    line: int  # 0-based line in the cell's text
    name: str
    default: str
    secret: bool


@dataclass(frozen=True)
class Plan:
    """A validated run: the cells in order, and everything the session needs."""

    runbook: Runbook
    cells: tuple[Cell, ...]
    selection: tuple[str, ...]
    env: Mapping[str, str]  # exported into the session (env file + variables)
    variables: Mapping[str, str]  # declared / --var variables, without secrets
    secrets: tuple[masking.Secret, ...]
    warnings: tuple[str, ...]
    env_file: str | None
    release_log: str | None
    release_template: str | None
    default_timeout: float
    terminal: bool = False  # an operator is at a TTY: interactive cells get it as their stdin
    scripts: Mapping[int, str] = field(default_factory=dict)  # cell index -> the shell text that runs it
    cwds: Mapping[int, str] = field(default_factory=dict)  # cell index -> its working directory (Runme mode)
    prompts: tuple[Prompt, ...] = ()  # placeholders the operator is asked about before anything runs
    fills: Mapping[int, Mapping[int, tuple[str, str]]] = field(default_factory=dict)  # placeholder values

    def timeout(self, cell: Cell) -> float:
        return cell.options.timeout or self.default_timeout

    def script(self, cell: Cell) -> str:
        """The shell text sent to the session for ``cell`` (its source, or generated: prompts, processes)."""
        return self.scripts.get(cell.index, cell.source)

    def cwd(self, cell: Cell) -> str | None:
        """Where ``cell`` runs: ``cwd=`` (Runme mode: also the document's directory / front matter ``cwd``)."""
        if cell.index in self.cwds:
            return self.cwds[cell.index]
        return str((self.runbook.base_dir / cell.options.cwd).resolve()) if cell.options.cwd else None

    def stdin_tty(self, cell: Cell) -> bool:
        """Whether ``cell``'s stdin is the session's terminal: an interactive cell not in the background, with
        an operator at a TTY. In Runme mode without one too, as Runme runs interactive cells on a pty: ``stty``
        and ``tput`` work, and a ``read`` waits (until the cell's timeout) for input nobody types."""
        if not cell.interactive or cell.options.background:
            return False
        return self.terminal or cell.runme


def build(book: Runbook, selection: Selection, options: Options) -> Plan:
    """Validate ``selection`` against ``book``; raise :class:`RunbookError` listing every problem."""
    problems: list[Problem] = list(book.problems)
    path = book.path
    environ = os.environ if options.environ is None else options.environ

    cells = _select(book, selection, problems)

    env_values: dict[str, str] = {}
    files = _EnvFiles()
    if book.runme:
        # Runme loads the project's .env files; their values are masked like any env-file value.
        env_values.update(_project_env(book, environ, problems, files))
    env_file = options.env_file or book.settings.env_file
    if env_file:
        # Interpolation sees the process environment, as Compose does when it reads the same file.
        values = files.read(env_file, environ, problems)
        if values is not None:
            env_values.update(values)
            _check_sample(book, env_file, env_values, problems)

    # The release log is read (TAG_PREV) even when this run will not write to it (--no-release-log, dry run).
    log_path = options.release_log or book.settings.release_log
    release_log = None if options.no_release_log else log_path
    if release_log and Path(release_log).is_dir():
        problems.append(Problem(path, 0, f"release log {release_log}: is a directory"))
    elif release_log and not Path(release_log).resolve().parent.is_dir():
        problems.append(Problem(path, 0, f"release log {release_log}: directory does not exist"))
    template = book.settings.release_template
    if release_log and template:
        problem = _check_template(template, path, book.key_line("release_template"))
        if problem is not None:
            problems.append(problem)

    variables, secret_vars = _variables(book, options.variables, environ, log_path, problems, options.target)
    names = {v.name for v in book.settings.vars if v.secret}
    shown = {k: v for k, v in variables.items() if k not in names and not is_secret_name(k)}

    masked = dict(env_values)
    masked.update(secret_vars)
    classified = masking.classify(masked, declared_secret=names, allow_short=options.allow_short_secrets)
    # A value an env file defines and then overrides (an old password left in while rotating) is masked too.
    for key, value in files.values:
        if masked.get(key) != value:
            older = masking.classify({key: value}, declared_secret=names, allow_short=options.allow_short_secrets)
            classified = masking.Classification(
                classified.secrets + older.secrets,
                classified.warnings + older.warnings,
                classified.refused + tuple(k for k in older.refused if k not in classified.refused),
            )
    masked_values = {s.value for s in classified.secrets}
    inherited = tuple(s for s in masking.inherited(environ) if s.value not in masked_values)
    for key in classified.refused:
        problems.append(
            Problem(
                env_file or path,
                0,
                f"{key}: value is shorter than 4 characters (or true/false) and cannot be masked; "
                "use a longer secret or pass --allow-short-secrets",
            )
        )

    danger = [c for c in cells if c.danger]
    if danger and not options.assume_yes and not options.interactive:
        ids = ", ".join(f"{c.label} (line {c.line})" for c in danger)
        problems.append(
            Problem(
                path,
                danger[0].line,
                f"refusing to run .danger cells without a terminal to confirm: {ids}; pass --yes to run them",
            )
        )

    env = dict(env_values)
    env.update(variables)
    runme_run = _RunmeRun() if not book.runme else _runme_run(book, cells, options, environ, env)

    if problems:
        raise RunbookError.from_problems(_unique(problems))

    if env_file:
        env["RUNBOOK_ENV_FILE"] = str(Path(env_file).resolve())
    return Plan(
        runbook=book,
        cells=tuple(cells),
        selection=selection.describe(),
        env=env,
        variables=shown,
        secrets=classified.secrets + inherited,
        warnings=tuple(dict.fromkeys(classified.warnings + tuple(files.warnings))) + runme_run.warnings,
        env_file=env_file,
        release_log=release_log,
        release_template=book.settings.release_template,
        default_timeout=book.settings.timeout or DEFAULT_TIMEOUT_S,
        terminal=options.interactive,
        scripts=runme_run.scripts,
        cwds=runme_run.cwds,
        prompts=runme_run.prompts,
        fills=runme_run.fills,
    )


# -- Runme mode ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunmeRun:
    scripts: Mapping[int, str] = field(default_factory=dict)
    cwds: Mapping[int, str] = field(default_factory=dict)
    prompts: tuple[Prompt, ...] = ()
    warnings: tuple[str, ...] = ()
    fills: Mapping[int, Mapping[int, tuple[str, str]]] = field(default_factory=dict)


PROJECT_ENV_FILES = (".env", ".env.local")  # read in this order: .env.local overrides .env
RUNME_SHELLS = frozenset({"", "sh", "bash", "shell", "zsh", "shellscript", "ksh", "fish", "sh-raw", "bat"})


def _project_env(
    book: Runbook, environ: Mapping[str, str], problems: list[Problem], files: _EnvFiles
) -> dict[str, str]:
    """``.env`` then ``.env.local`` beside the runbook; a variable set in the environment keeps its value."""
    values: dict[str, str] = {}
    for name in PROJECT_ENV_FILES:
        env_path = book.base_dir / name
        if env_path.is_file():
            values.update(files.read(str(env_path), environ, problems, unused=environ) or {})
    return {k: v for k, v in values.items() if k not in environ}


def _runme_cwd(book: Runbook, cell: Cell, warnings: list[str]) -> str:
    """Runme's directory: the runbook's, then front matter ``cwd``, then the cell's ``cwd`` (each relative to
    the one before; one that is not a directory is skipped, as Runme skips it)."""
    base = book.base_dir
    here = base
    for kind, given in (("front matter cwd", book.runme_settings.cwd), ("cwd", cell.options.cwd)):
        if not given:
            continue
        candidate = (here / given).resolve()
        if candidate.is_dir():
            here = candidate
        else:
            shown = os.path.relpath(here, base) if here.is_relative_to(base) else str(here)
            warnings.append(
                f"{book.path}:{cell.line}: {cell.label}: {kind} {given} is not a directory; it runs in {shown}"
            )
    return str(here)


def _runme_run(
    book: Runbook,
    cells: Sequence[Cell],
    options: Options,
    environ: Mapping[str, str],
    env: Mapping[str, str],
) -> _RunmeRun:
    """The shell text, directory and placeholder prompts of each selected Runme-mode cell."""
    cwds: dict[int, str] = {}
    fills: dict[int, dict[int, tuple[str, str]]] = {}
    prompts: list[Prompt] = []
    warnings: list[str] = []
    ask = options.interactive and not book.runme_settings.skip_prompts
    lines = {c.line for c in cells}
    warnings += [str(w) for w in book.warnings if w.code == "RX116" and w.line in lines]  # unclosed fences
    for cell in cells:
        warnings += [f"{book.path}:{cell.line}: {cell.label}: {note}" for note in cell.warnings]
        cwds[cell.index] = _runme_cwd(book, cell, warnings)
        if cell.lang in RUNME_SHELLS:
            given, asked = _placeholders(cell, options, environ, env, ask)
            if given:
                fills[cell.index] = given
            prompts += asked
    scripts = _generate(book.path, cells, fills, _search_path(env, environ), warnings)
    return _RunmeRun(scripts, cwds, tuple(prompts), tuple(warnings), fills)


def _search_path(env: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    return {"PATH": env.get("PATH", environ.get("PATH", os.defpath))}


def _generate(
    path: str,
    cells: Sequence[Cell],
    fills: Mapping[int, Mapping[int, tuple[str, str]]],
    search_path: Mapping[str, str],
    warnings: list[str],
) -> dict[int, str]:
    """Each cell's shell text where it is not its source: prompts dropped, placeholders filled, processes.

    A program that is not installed fails its cell when the cell runs (naming the program), not the run.
    """
    scripts: dict[int, str] = {}
    for cell in cells:
        text = cell.text
        if cell.index in fills:
            text = prompt_env.rewrite(text, fills[cell.index])
        route = cell.route
        if route.kind == "process":
            argv = languages.pick(route.candidates, search_path)
            if argv is None:
                wanted = " or ".join(c[0] for c in route.candidates)
                message = f"{wanted} is not installed ({route.via}): install it or set interpreter=PROGRAM"
                warnings.append(f"{path}:{cell.line}: cell {cell.label} will fail: {message}")
                text = languages.missing_script(f"cell {cell.label}: {message}")
            else:
                text = languages.process_script(argv, text, route.extension, route.shell)
        if cell.options.background:
            text = languages.background_script(text, cell.label)
        if text != cell.source:
            scripts[cell.index] = text
    return scripts


def _placeholders(
    cell: Cell,
    options: Options,
    environ: Mapping[str, str],
    env: Mapping[str, str],
    ask: bool,
) -> tuple[dict[int, tuple[str, str]], list[Prompt]]:
    """Placeholders filled now (``--var``, or already set when asking), and those to ask the operator about."""
    how = prompt_env.mode(cell.options.extra.get("promptEnv"))
    given: dict[int, tuple[str, str]] = {}
    asked: list[Prompt] = []
    for found in prompt_env.find(cell.text):
        if found.name in options.variables:
            given[found.line] = (found.name, options.variables[found.name])
            continue
        if not ask or how == "never":
            continue
        current = env.get(found.name, environ.get(found.name))
        if current is not None and how == "auto":
            given[found.line] = (found.name, current)  # already set: Runme does not ask
            continue
        default = current if current is not None else found.value
        asked.append(Prompt(cell.index, found.line, found.name, default, is_secret_name(found.name)))
    return given, asked


def answer(plan: Plan, values: Mapping[Prompt, str], allow_short: bool = False) -> Plan:
    """``plan`` with the operator's answers to its prompts written into the cells (secret answers masked)."""
    if not plan.prompts:
        return plan
    fills = {index: dict(lines) for index, lines in plan.fills.items()}
    for prompt in plan.prompts:
        fills.setdefault(prompt.cell, {})[prompt.line] = (prompt.name, values.get(prompt, prompt.default))
    scripts = _generate(plan.runbook.path, plan.cells, fills, _search_path(plan.env, os.environ), [])
    secret = {p.name: values.get(p, p.default) for p in plan.prompts if p.secret}
    classified = masking.classify(secret, allow_short=allow_short)
    problems = [
        Problem(plan.runbook.path, 0, f"{key}: the value given is shorter than 4 characters and cannot be masked")
        for key in classified.refused
    ]
    if problems:
        raise RunbookError.from_problems(problems)
    return replace(
        plan,
        scripts=scripts,
        fills=fills,
        prompts=(),
        secrets=plan.secrets + classified.secrets,
        warnings=plan.warnings + classified.warnings,
    )


class _EnvFiles:
    """The env files a plan reads: every value of every entry (all are masked, a key defined twice included)
    and a warning per duplicated key, by name and lines."""

    def __init__(self) -> None:
        self.values: list[tuple[str, str]] = []
        self.warnings: list[str] = []

    def read(
        self, path: str, environ: Mapping[str, str], problems: list[Problem], unused: Container[str] = ()
    ) -> dict[str, str] | None:
        """The file's values (the last one of a key, as Compose reads it), or None after adding its problem.
        Keys in ``unused`` are not taken from this file (Runme keeps a variable the environment sets), so their
        values here are not masked either."""
        try:
            entries = env_file_entries(path, environ=environ)
        except RunbookError as exc:
            problems.append(_as_problem(exc, path))
            return None
        self.values += [(e.key, e.value) for e in entries if e.key not in unused]
        for key, lines in duplicates(entries).items():
            listed = ", ".join(map(str, lines))
            self.warnings.append(
                f"{path}: {key} is defined {len(lines)} times (lines {listed}); the last one is used, "
                "every value is masked"
            )
        return {e.key: e.value for e in entries}


def _as_problem(exc: RunbookError, fallback: str) -> Problem:
    text = str(exc)
    match = re.match(r"^(.*?):(\d+): (.*)$", text)
    if match:
        return Problem(match.group(1), int(match.group(2)), match.group(3))
    head, sep, rest = text.partition(": ")
    return Problem(head, 0, rest) if sep else Problem(fallback, 0, text)


def _unique(problems: Sequence[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for p in problems:
        if str(p) not in seen:
            seen.add(str(p))
            out.append(p)
    return out


def _select(book: Runbook, selection: Selection, problems: list[Problem]) -> list[Cell]:
    path = book.path
    runnable = [c for c in book.cells if c.executable]
    by_id: dict[str, Cell] = {}
    for c in book.cells:
        if c.id:
            by_id.setdefault(c.id, c)  # a name used twice (Runme mode) targets its first cell
    chosen: set[int] = set()
    explicit = bool(selection.sections or selection.cells or selection.tags)

    for sid in selection.sections:
        section = book.section(sid)
        if section is None:
            problems.append(
                _unknown(book, "section", sid, [s.id for s in book.sections], {s.id: s.line for s in book.sections})
            )
            continue
        # A section is asked for by name: its excludeFromRunAll cells run too (they are out of whole-file runs).
        members = [c for c in runnable if sid in c.sections]
        if not members:
            problems.append(Problem(path, section.line, f"section #{sid} has no executable cells"))
        chosen.update(c.index for c in members)
    for cid in selection.cells:
        cell = by_id.get(cid)
        if cell is None:
            problems.append(_unknown_cell(book, cid))
        elif not cell.executable:
            problems.append(Problem(path, cell.line, f"cell #{cid} is not executable ({cell.why_not})"))
        else:
            chosen.add(cell.index)
    for tag in selection.tags:
        # As in Runme, a tag run is a run-all restricted to the tag: excludeFromRunAll cells stay out.
        members = [c for c in runnable if tag in book.tags_of(c) and not c.options.exclude_from_run_all]
        if not members:
            known = sorted({t for c in runnable for t in book.tags_of(c)})
            hint = f"; tags: {', '.join(known[:12])}" if known else ""
            problems.append(Problem(path, 0, f"no executable cell has tag {tag!r}{hint}"))
        chosen.update(c.index for c in members)
    if not explicit:
        chosen = {c.index for c in runnable if not c.options.exclude_from_run_all}

    cells = [c for c in book.cells if c.index in chosen]
    if selection.start is not None:
        start = by_id.get(selection.start)
        if start is None:
            problems.append(_unknown_cell(book, selection.start))
        elif not start.executable:
            problems.append(Problem(path, start.line, f"cell #{selection.start} is not executable ({start.why_not})"))
        elif start.index not in chosen:
            problems.append(Problem(path, start.line, f"--from {selection.start}: that cell is not in the selection"))
        else:
            cells = [c for c in cells if c.index >= start.index]
    if not cells and not problems:
        how = "no shell fences, and no interpreter for the others" if book.runme else "mark shell fences with .exec"
        problems.append(Problem(path, 0, f"nothing to run: no executable cells ({how})"))
    return cells


def _unknown_cell(book: Runbook, wanted: str) -> Problem:
    """An unknown cell name; "did you mean" offers only cells that run (the names ``--list`` prints)."""
    runnable = {c.id: c.line for c in book.cells if c.executable and c.id}
    return _unknown(book, "cell", wanted, list(runnable), runnable)


def _unknown(book: Runbook, kind: str, wanted: str, known: list[str], lines: Mapping[str, int]) -> Problem:
    hint = closest(wanted, known)
    if hint:
        return Problem(
            book.path, lines[hint], f"unknown {kind} {wanted!r} (did you mean {hint!r}, line {lines[hint]}?)"
        )
    return Problem(book.path, 0, f"unknown {kind} {wanted!r}" + (f"; known: {', '.join(known[:12])}" if known else ""))


def _check_sample(book: Runbook, env_file: str, values: Mapping[str, str], problems: list[Problem]) -> None:
    sample = book.settings.env_sample
    if not sample:
        return
    try:
        keys = sample_keys(sample)
    except RunbookError as exc:
        problems.append(_as_problem(exc, sample))
        return
    missing = [k for k in keys if k not in values]
    if missing:
        problems.append(Problem(env_file, 0, f"missing keys listed in {sample}: {', '.join(missing)}"))


def _variables(
    book: Runbook,
    given: Mapping[str, str],
    environ: Mapping[str, str],
    release_log: str | None,
    problems: list[Problem],
    target: str | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Resolve declared variables; return (all values, secret values)."""
    path = book.path
    values: dict[str, str] = {}
    secrets: dict[str, str] = {}
    specs: dict[str, VarSpec] = {v.name: v for v in book.settings.vars}
    for name in given:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.append(Problem(path, 0, f"--var {name}=...: not a valid shell variable name"))
    # Variables read from the release log come last: TAG_PREV depends on this run's TAG.
    ordered = sorted(book.settings.vars, key=lambda v: v.source == "release_log")
    for spec in ordered:
        value: str | None = given.get(spec.name)
        if value is None and spec.source == "release_log":
            value = _from_release_log(release_log, spec.name, values, target)
        if value is None:
            value = environ.get(spec.name)
        if value is None:
            value = spec.default
        hint = f" ({spec.help})" if spec.help else ""
        if value is None:
            if spec.required:
                message = f"missing required variable {spec.name}{hint}: pass --var {spec.name}=..."
                problems.append(Problem(path, book.key_line(spec.name), message))
            continue
        secret = spec.secret or is_secret_name(spec.name)
        if spec.pattern and not re.search(spec.pattern, value):
            # Quoted as written: repr() would double every backslash of a pattern such as '^\d{4}$'.
            shown = "***" if secret else f"'{value}'"
            message = f"variable {spec.name}={shown} does not match '{spec.pattern}'{hint}"
            problems.append(Problem(path, book.key_line(spec.name), message))
        values[spec.name] = value
        if secret:
            secrets[spec.name] = value
    for name, value in given.items():
        if name not in specs:
            values[name] = value
            if is_secret_name(name):
                secrets[name] = value
    return values, secrets


def _check_template(template: str, path: str, line: int) -> Problem | None:
    """A release template that is missing or does not compile is found before anything runs."""
    try:
        source = Path(template).read_text(encoding="utf-8")
    except OSError:
        return Problem(path, line, f"release_template {template}: no such file")
    import jinja2  # noqa: PLC0415 - loaded only for a template: the largest import, 7 MiB

    try:
        jinja2.Environment(undefined=jinja2.StrictUndefined).parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return Problem(template, exc.lineno or 0, f"template syntax: {exc.message}")
    return None


def _from_release_log(
    release_log: str | None, name: str, known: Mapping[str, str], target: str | None = None
) -> str | None:
    """``X_PREV``: the last successful value of ``X`` in the release log other than this run's ``X``, among
    the records of the same target (one engine's history says nothing about what runs on another)."""
    if not release_log or not Path(release_log).is_file():
        return None
    base = name[: -len("_PREV")] if name.endswith("_PREV") else name
    return last_successful(release_log, base, exclude=known.get(base) if base != name else None, target=target)
