"""A cell fails exactly when its text would in ``bash -eo pipefail cell.sh``: a differential test against bash.

Each case of ``fixtures/errexit/cases.txt`` runs twice from the same directory:

* through the real CLI, as a generated runbook (the case's setup cells, then the case cell, in one session);
* as ``bash -eo pipefail case`` (the case cell as a script file named like the cell, so bash's messages name
  it the same way), with the setup cells run first in that same shell through ``BASH_ENV``, each followed by
  ``set -eo pipefail`` as every new cell starts with it.

Both must agree on pass/fail, the exit status and the output, line by line (stdout and stderr merged, as on
the terminal). Three differences in bash's own stderr lines are known and documented in docs/syntax.md (the
cell runs through ``eval``): an xtrace line has one more ``+``, a syntax error reads ``case: eval: line N``,
and a message from inside a function defined in a cell names ``main`` instead of the cell.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import FIXTURES, run_cli

CASES_FILE = FIXTURES / "errexit" / "cases.txt"
# The transcript's cell lines: "<UTC time> <label> | <text>".
_TRANSCRIPT_LINE = re.compile(r"^\S+ (\S+) \| ?(.*)$")


@dataclass(frozen=True)
class Case:
    name: str
    line: int
    expected: str  # what bash does: "passes" or "fails"
    setup: tuple[str, ...]
    cell: str


@dataclass(frozen=True)
class Outcome:
    exit_code: int | None
    output: tuple[str, ...]
    setup_passed: bool = True


def read_cases(path: Path) -> list[Case]:
    """Parse the cases file (format in its header)."""
    cases: list[Case] = []
    header: tuple[str, int, str] | None = None
    cells: list[list[str]] = []
    kinds: list[str] = []

    def finish() -> None:
        if header is None:
            return
        texts = ["\n".join(lines).strip("\n") + "\n" for lines in cells]
        if not kinds:
            raise ValueError(f"{path}:{header[1]}: a case without a cell")
        setup = tuple(t for t, k in zip(texts, kinds, strict=True) if k == "setup")
        cell = [t for t, k in zip(texts, kinds, strict=True) if k == "cell"]
        if len(cell) != 1:
            raise ValueError(f"{path}:{header[1]}: a case needs exactly one cell")
        cases.append(Case(header[0], header[1], header[2], setup, cell[0]))

    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if line.startswith("=== "):
            finish()
            name, _, expected = line[4:].partition(": ")
            if expected not in ("passes", "fails"):
                raise ValueError(f"{path}:{number}: expected 'passes' or 'fails', got {expected!r}")
            header, cells, kinds = (name.strip(), number, expected), [], []
        elif header is None:
            continue
        elif line in ("--- setup", "--- cell"):
            kinds.append(line[4:])
            cells.append([])
        else:
            if not kinds:
                kinds.append("cell")
                cells.append([])
            cells[-1].append(line)
    finish()
    return cases


CASES = read_cases(CASES_FILE)


def _fresh(work: Path, case: Case) -> None:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # The reference needs the cell as a file named like the cell; the runner's folder gets the same file, so
    # both see the same directory.
    (work / "case").write_text(case.cell)


def reference(case: Case, base: Path) -> Outcome:
    work = base / "cwd"
    _fresh(work, case)
    env = {k: v for k, v in os.environ.items() if k != "BASH_ENV"}
    # A setup cell may leave the folder (cd): bash finds the script on PATH then, still named "case".
    scripts = base / "bin"
    scripts.mkdir(exist_ok=True)
    (scripts / "case").write_text(case.cell)
    env["PATH"] = f"{scripts}{os.pathsep}{env.get('PATH', '')}"
    if case.setup:
        setup = base / "setup.sh"
        # Unset first, so programs the cells start do not run the setup again.
        cells = "".join(f"{cell}{{ set -eo pipefail; }} 2>/dev/null\n" for cell in case.setup)
        setup.write_text("unset BASH_ENV\n" + cells)
        env["BASH_ENV"] = str(setup)
    proc = subprocess.run(
        ["bash", "-eo", "pipefail", "case"],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=30,
        check=False,
    )
    return Outcome(proc.returncode, tuple(proc.stdout.decode("utf-8", "replace").splitlines()))


def _fence(text: str, info: str) -> str:
    return f"~~~~~~bash {{{info}}}\n{text}~~~~~~\n\n"


def runner(case: Case, base: Path) -> Outcome:
    work = base / "cwd"
    _fresh(work, case)
    out = base / "out"
    out.mkdir(exist_ok=True)
    book = base / "book.md"
    cells = "".join(_fence(text, f"#setup{n} .exec") for n, text in enumerate(case.setup, 1))
    book.write_text(f"# {case.name}\n\n{cells}{_fence(case.cell, '#case .exec')}")
    args = [str(book), "--no-release-log", "--report", str(out / "r.json"), "--junit", str(out / "j.xml")]
    result = run_cli([*args, "--transcript", str(out / "t.log")], cwd=work, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads((out / "r.json").read_text())
    by_id = {c["id"]: c for c in report["cells"]}
    setup_passed = all(by_id[f"setup{n}"]["status"] == "passed" for n in range(1, len(case.setup) + 1))
    lines = []
    for line in (out / "t.log").read_text(encoding="utf-8", errors="replace").splitlines():
        match = _TRANSCRIPT_LINE.match(line)
        if match and match.group(1) != "runner":
            lines.append(match.group(2))
    return Outcome(by_id["case"]["exit_code"], tuple(lines), setup_passed)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Outcome, Outcome]]:
    """Every case through both, a few at a time (each CLI run is mostly interpreter start-up)."""
    root = tmp_path_factory.mktemp("errexit")

    def both(case: Case) -> tuple[Outcome, Outcome]:
        base = root / case.name
        base.mkdir()
        return reference(case, base), runner(case, base)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip((c.name for c in CASES), pool.map(both, CASES), strict=True))


def test_the_corpus_is_large_and_covers_both_outcomes() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.expected for c in CASES} == {"passes", "fails"}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.name}:{c.line}" for c in CASES])
def test_cell_agrees_with_bash_eo_pipefail(case: Case, outcomes: dict[str, tuple[Outcome, Outcome]]) -> None:
    bash, ours = outcomes[case.name]
    assert (bash.exit_code == 0) == (case.expected == "passes"), f"the reference itself: {bash}"
    assert ours.setup_passed, ours
    assert ours.exit_code == bash.exit_code, (ours, bash)
    assert len(ours.output) == len(bash.output), (ours.output, bash.output)
    for mine, theirs in zip(ours.output, bash.output, strict=True):
        assert _same_line(mine, theirs), (mine, theirs, ours.output)


def _same_line(ours: str, bash: str) -> bool:
    """Equal, or equal but for one of the documented stderr differences."""
    if ours == bash:
        return True
    if ours.startswith("++") and ours[1:] == bash:  # xtrace: one more level of indirection
        return True
    if ours.replace(": eval: line ", ": line ", 1) == bash and "syntax error" in bash:
        return True
    return ours.startswith("main: line ") and ours.removeprefix("main: ") == bash.removeprefix("case: ")
