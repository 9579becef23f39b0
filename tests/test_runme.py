"""Runme mode, end to end: each folder of ``tests/fixtures/runme/`` is a small project written from Runme's
documented behaviour. ``README.md`` is the runbook; ``list.json`` is the expected ``--list --json``;
``runs.yaml`` lists runs of the real CLI (no TTY) with their exit status, a pattern of stderr (``stderr``) or
of the run's own lines (``says``, e.g. a warning) and, per cell of
the JSON report, ``[label, status, last lines of output]`` (``re:`` marks a pattern, ``{name}`` the folder).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import FIXTURES, run_cli

CASES = sorted(p for p in (FIXTURES / "runme").iterdir() if p.is_dir())


def _copy(case: Path, tmp: Path) -> Path:
    work = tmp / case.name
    shutil.copytree(case, work)
    for name in ("list.json", "runs.yaml"):
        (work / name).unlink(missing_ok=True)
    return work


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_list_json(case: Path, tmp_path: Path) -> None:
    work = _copy(case, tmp_path)
    got = run_cli(["README.md", "--list", "--json"], cwd=work)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == json.loads((case / "list.json").read_text(encoding="utf-8"))


RUNS = [
    pytest.param(case, run, id=f"{case.name}:{number}")
    for case in CASES
    for number, run in enumerate(yaml.safe_load((case / "runs.yaml").read_text(encoding="utf-8")), 1)
]


def _line_matches(want: str, got: str, name: str) -> bool:
    want = want.replace("{name}", name)
    return re.fullmatch(want[3:], got) is not None if want.startswith("re:") else want == got


@pytest.mark.parametrize(("case", "run"), RUNS)
def test_run(case: Path, run: dict[str, Any], tmp_path: Path) -> None:
    work = _copy(case, tmp_path)
    args = ["README.md", *run["args"], "--no-release-log", "--report", "r.json"]
    got = run_cli(args, cwd=work, env=run.get("env"))
    assert got.returncode == run["exit"], got.stdout + got.stderr
    assert "Traceback" not in got.stderr
    if "stderr" in run:
        assert re.search(run["stderr"], got.stderr, re.M), got.stderr
    if "says" in run:  # a warning the run prints with its output
        assert re.search(run["says"], got.stdout, re.M), got.stdout
    if "cells" not in run:
        assert not (work / "r.json").exists(), "a refused run must not start"
        return
    report = json.loads((work / "r.json").read_text(encoding="utf-8"))
    cells = [[c["label"], c["status"], c["tail"]] for c in report["cells"]]
    assert [c[:2] for c in cells] == [w[:2] for w in run["cells"]], cells
    for (label, _, tail), (_, _, want) in zip(cells, run["cells"], strict=True):
        assert len(tail) == len(want), (label, tail)
        assert all(_line_matches(w, g, case.name) for w, g in zip(want, tail, strict=True)), (label, tail)


PROMPTED = """---
runme: {id: 01J9Z3K8Q4W2E6R7T8Y9U0TTYS, version: v3}
---

```sh { name=placeholder }
$ export DEPLOY_ENV="staging"
$ export API_TOKEN="paste-the-token-here"
$ echo "env=$DEPLOY_ENV token=$API_TOKEN"
```

```sh { name=not-asked promptEnv=no }
export REGION=eu-west-1
echo "region=$REGION"
```

```sh { name=terminal }
stty -a >/dev/null && echo "stdin is a terminal"
```

```sh { name=no-terminal interactive=false }
stty -a >/dev/null 2>&1 || echo "stdin is not a terminal"
```
"""


def test_on_a_terminal_placeholders_are_asked_and_interactive_cells_get_it(tmp_path: Path) -> None:
    import os
    import sys

    import pexpect

    (tmp_path / "README.md").write_text(PROMPTED, encoding="utf-8")
    env = dict(os.environ)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "runbook_exec.cli", "README.md", "--no-release-log"],
        cwd=str(tmp_path),
        env=env,
        timeout=60,
        encoding="utf-8",
    )
    child.expect_exact("Set environment variable DEPLOY_ENV [staging]: ")
    child.sendline("qa")
    child.expect_exact("Set environment variable API_TOKEN [keep the current value]: ")  # no echo
    child.sendline("typed-token-value-for-the-test")
    child.expect(pexpect.EOF)
    child.close()
    out = child.before
    assert child.exitstatus == 0, out
    assert "env=qa token=***" in out
    assert "typed-token-value-for-the-test" not in out
    assert "region=eu-west-1" in out and "REGION" not in out.split("env=qa")[0]
    assert "stdin is a terminal" in out and "stdin is not a terminal" in out
