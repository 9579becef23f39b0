"""How a cell of a given language runs, and the shell text that runs it from inside the session.

Shell cells run in the session itself. Every other cell runs as its own process, the way Runme runs it:
the program of an ``interpreter`` attribute, else a ``#!`` line, else the language's usual interpreter
(``python``/``py`` -> ``python3``, ``js`` -> ``node``, ...). A front-matter ``shell`` other than bash/sh runs
shell cells as their own process of that shell. The process is started *by the session* with generated
shell text (the body goes to a private temporary file, then ``PROGRAM FILE``), so it inherits the session's
working directory and exported environment, and its output, timeout, masking and records are those of any
cell.
"""

from __future__ import annotations

import secrets
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from runbook_exec.doc import runme

# Runme's table: the first candidate installed is used.
INTERPRETERS: dict[str, tuple[str, ...]] = {
    "js": ("node",),
    "javascript": ("node",),
    "jsx": ("node",),
    "javascriptreact": ("node",),
    "ts": ("ts-node", "deno run", "bun run"),
    "typescript": ("ts-node", "deno run", "bun run"),
    "tsx": ("ts-node", "deno run", "bun run"),
    "typescriptreact": ("ts-node", "deno run", "bun run"),
    "ksh": ("ksh",),
    "fish": ("fish",),
    "powershell": ("powershell",),
    "pwsh": ("pwsh",),
    "lua": ("lua",),
    "perl": ("perl",),
    "php": ("php",),
    "python": ("python3", "python"),
    "py": ("python3", "python"),
    "ruby": ("ruby",),
    "rb": ("ruby",),
    "rust": ("rust-script",),
    "rs": ("rust-script",),
    "go": ("go run",),
}
EXTENSIONS = {
    "js": "js",
    "javascript": "js",
    "jsx": "jsx",
    "javascriptreact": "jsx",
    "ts": "ts",
    "typescript": "ts",
    "tsx": "tsx",
    "typescriptreact": "tsx",
    "py": "py",
    "python": "py",
    "ruby": "rb",
    "rb": "rb",
    "go": "go",
    "powershell": "ps1",
    "pwsh": "ps1",
    "rust": "rs",
    "rs": "rs",
    "lua": "lua",
    "perl": "pl",
    "php": "php",
}
# The options a shell gets before the cell, as Runme sets them (errexit and pipefail where there is one).
_SHELL_HEADER = {"bash": "set -e -o pipefail\n", "zsh": "set -e -o pipefail\n", "ksh": "set -e -o pipefail\n"}
_POSIX_SHELLS = ("sh", "dash", "ash", "mksh", "posh", "busybox")


@dataclass(frozen=True)
class Route:
    """How a cell runs: in the session, as a process of one of ``candidates``, or not at all (``why_not``)."""

    kind: str  # "session" | "process" | "none"
    candidates: tuple[tuple[str, ...], ...] = ()  # argv prefixes; the cell's file is appended
    via: str = ""  # where the program comes from, for messages
    extension: str = ""
    shell: str = ""  # the program is a shell: its name (its header is written before the body)
    why_not: str | None = None

    @property
    def runs(self) -> bool:
        return self.kind != "none"

    def describe(self) -> str:
        """``session``, ``python3 (language python)``, or why it does not run."""
        if self.kind == "session":
            return "session"
        if self.kind == "process":
            return f"{' '.join(self.candidates[0])} ({self.via})"
        return self.why_not or "not run"


SESSION = Route("session")


def _split(command: str) -> tuple[str, ...]:
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return tuple(words)


def _shell_route(argv: tuple[str, ...], via: str) -> Route:
    name = PurePosixPath(argv[0]).name
    if name in ("bash", "sh") and len(argv) == 1:
        return SESSION
    return Route("process", (argv,), via, "sh", shell=name)


def _shebang(body: str) -> tuple[str, ...] | None:
    first = body.split("\n", 1)[0]
    if not first.startswith("#!"):
        return None
    # As the kernel reads it: the interpreter, then at most one argument (the rest of the line).
    parts = first[2:].strip().split(None, 1)
    return tuple(parts) if parts else None


def route(lang: str, body: str, interpreter: str | None, front_matter_shell: str | None) -> Route:
    """How a Runme-mode cell of ``lang`` with ``body`` runs (``interpreter``: its attribute, if any)."""
    shell_lang = lang in runme.SHELL_LANGUAGES
    if interpreter and interpreter.strip():
        argv = _split(interpreter)
        if shell_lang:
            return _shell_route(argv, "interpreter attribute")
        return Route("process", (argv,), "interpreter attribute", EXTENSIONS.get(lang, ""))
    if shell_lang:
        if lang in runme.SESSION_LANGUAGES or lang == "zsh":
            if front_matter_shell and front_matter_shell.strip():
                return _shell_route(_split(front_matter_shell), "front matter shell")
            return SESSION
        return Route("process", (tuple(INTERPRETERS[lang][0].split()),), f"language {lang}", "sh", shell=lang)
    shebang = _shebang(body)
    if shebang is not None:
        return Route("process", (shebang,), "#! line", EXTENSIONS.get(lang, ""))
    if lang in INTERPRETERS:
        candidates = tuple(tuple(c.split()) for c in INTERPRETERS[lang])
        return Route("process", candidates, f"language {lang}", EXTENSIONS.get(lang, ""))
    what = f"a {lang} cell" if lang else "a cell without a language"
    return Route(
        "none",
        why_not=f"{what} has no interpreter: add interpreter=PROGRAM (or a #! line) to run it",
    )


def pick(candidates: tuple[tuple[str, ...], ...], environ: Mapping[str, str]) -> tuple[str, ...] | None:
    """The first candidate whose program is installed (on ``environ``'s PATH), or None."""
    path = environ.get("PATH")
    for argv in candidates:
        if shutil.which(argv[0], path=path):
            return argv
    return None


def _header(shell: str) -> str:
    if shell in _SHELL_HEADER:
        return _SHELL_HEADER[shell]
    return "set -e\n" if shell in _POSIX_SHELLS else ""


def process_script(argv: tuple[str, ...], body: str, extension: str = "", shell: str = "") -> str:
    """Shell text that writes ``body`` to a private file and runs ``argv FILE`` with the session's cwd and env.

    The status of the program is the cell's status; the file is removed whatever happens.
    """
    text = _header(shell) + body
    if not text.endswith("\n"):
        text += "\n"
    marker = f"RUNBOOK_CELL_{secrets.token_hex(8)}"
    while marker in text:
        marker = f"RUNBOOK_CELL_{secrets.token_hex(8)}"
    name = "cell" + (f".{extension}" if extension else "")
    command = " ".join(shlex.quote(a) for a in argv)
    return (
        '__rx_d=$(mktemp -d "${TMPDIR:-/tmp}/runbook-cell.XXXXXX")\n'
        f"cat >\"$__rx_d/{name}\" <<'{marker}'\n{text}{marker}\n"
        f'{command} "$__rx_d/{name}" && __rx_rc=0 || __rx_rc=$?\n'
        'rm -rf -- "$__rx_d"\n'
        "(exit $__rx_rc)\n"
    )


def missing_script(message: str) -> str:
    """Shell text for a cell whose program is not installed: say so on stderr, fail like a missing command."""
    return f"printf 'runbook-exec: %s\\n' {shlex.quote(message)} >&2\n(exit 127)\n"


def background_script(script: str, label: str) -> str:
    """Shell text that starts ``script`` in the background of the session and does not wait for it."""
    body = script if script.endswith("\n") else script + "\n"
    return f"(\n{body}) </dev/null &\nprintf '%s: running in the background, pid %s\\n' {shlex.quote(label)} \"$!\"\n"
