"""What start-up imports, and which way imports point between the package's subpackages.

Start-up: each command imports what it uses, so ``--version`` and ``--help`` import no command, ``--list``
no masking engine, and ``check`` no masking engine or bash session. Checked on the modules a real process
has loaded (a list of modules that must not be there, not a timing: ``bench/startup.py`` has the timings).

Layout: the subpackages read as the pipeline, and imports only point down it. Every ``runbook_exec``
import is collected from the source (module level and inside functions, ``TYPE_CHECKING`` included).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "runbook_exec"
DEPLOY = ROOT / "ops" / "deploy.md"

# The console script's own code, then every module the process ended up with.
PROBE = """
import sys
from runbook_exec.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --version and --help exit from argparse
    code = exc.code
print("MODULES " + " ".join(sorted(sys.modules)), file=sys.stderr)
"""

ENGINES = ("ahocorasick_rs", "hyperscan", "pexpect", "jinja2")
PARSING = ("markdown_it", "mdit_py_plugins", "yaml")
HEAVY_OURS = (
    "runbook_exec.secrets.masking",
    "runbook_exec.secrets.literals",
    "runbook_exec.ops.preflight",
    "runbook_exec.run.shell",
    "runbook_exec.run.executor",
    "runbook_exec.run.plan",
    "runbook_exec.records.release_log",
    "runbook_exec.records.rescan",
)
SITE = ("runbook_exec.site", "mkdocs")

# Neither --version nor --help imports a command or a stage.
NO_COMMAND = (*ENGINES, *PARSING, *SITE, "runbook_exec.commands", "runbook_exec.lint", "runbook_exec.doc")
NO_COMMAND += ("runbook_exec.run", "runbook_exec.records", "runbook_exec.secrets", "runbook_exec.ops")

CASES = {
    "--version": (["--version"], NO_COMMAND),
    "--help": (["--help"], NO_COMMAND),
    "--list": ([str(DEPLOY), "--list"], (*ENGINES, *HEAVY_OURS, *SITE, "runbook_exec.lint", "tomllib")),
    "check": (
        ["check", "--skip", "shellcheck", str(DEPLOY)],
        (*ENGINES, *HEAVY_OURS, *SITE, "runbook_exec.commands", "runbook_exec.run"),
    ),
}


def _loaded(args: list[str]) -> set[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    [line] = [line for line in done.stderr.splitlines() if line.startswith("MODULES ")]
    return set(line.split()[1:])


@pytest.mark.parametrize("case", list(CASES))
def test_start_up_imports_only_what_the_command_uses(case: str) -> None:
    args, forbidden = CASES[case]
    loaded = _loaded(args)
    found = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert not found, f"runbook-exec {' '.join(args)} imported {found}"


# -- the subpackage graph ------------------------------------------------------------------------------

# Bottom to top: a subpackage imports only those before it. ``base`` is runbook_exec/__init__.py and
# errors.py; cli.py parses and dispatches to commands/, which call into the stages.
LAYERS = ("base", "doc", "secrets", "records", "ops", "run", "lint", "site", "commands", "cli")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """Every ``runbook_exec`` module ``path`` imports, wherever the import statement is."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "runbook_exec")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "runbook_exec":
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield sub if sub in modules else node.module


def _layer(module: str) -> str:
    parts = module.split(".")
    if module in ("runbook_exec", "runbook_exec.errors"):
        return "base"
    return parts[1]


def _graph() -> dict[str, dict[str, list[str]]]:
    """subpackage -> imported subpackage -> the importing modules (``a imports b`` lines)."""
    modules = _modules()
    graph: dict[str, dict[str, list[str]]] = {}
    for name, path in modules.items():
        for target in _imports(path, modules):
            a, b = _layer(name), _layer(target)
            if a != b:
                graph.setdefault(a, {}).setdefault(b, []).append(f"{name} imports {target}")
    return graph


def test_every_module_has_a_layer() -> None:
    assert {_layer(m) for m in _modules()} == set(LAYERS)


def test_subpackage_graph_has_no_cycle() -> None:
    graph = _graph()
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in graph.get(node, {}):
            if state.get(nxt) == "open":
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_imports_point_down_the_pipeline() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [
        line for a, targets in _graph().items() for b, lines in targets.items() if rank[b] > rank[a] for line in lines
    ]
    assert not upward, "imports pointing up the layers " + " < ".join(LAYERS) + ":\n" + "\n".join(upward)


def test_only_the_command_line_reaches_the_commands() -> None:
    reaching = [
        line
        for a, targets in _graph().items()
        for b, lines in targets.items()
        if b in ("cli", "commands") and a not in ("cli", "commands")
        for line in lines
    ]
    assert not reaching, "\n".join(reaching)
    assert not _graph().get("commands", {}).get("cli"), "commands/ imports cli.py: cli.py only dispatches"
