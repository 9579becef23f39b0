"""Executor logic above the shell, with a scripted fake shell (the real bash has its own tests)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from runbook_exec.doc.document import parse_text
from runbook_exec.run.console import Console
from runbook_exec.run.executor import Executor
from runbook_exec.run.plan import Options, Selection, build
from runbook_exec.run.shell import ShellResult, Started
from runbook_exec.secrets.masking import Redactor, Secret

RUNBOOK = """# T

```bash {#one .exec}
echo one
```

```bash {#flaky .exec retries=2 interval=0}
echo flaky
```

```bash {#down .exec .danger}
echo down
```

```bash {#logs .exec when=failure}
echo logs
```

```bash {#always .exec when=always}
echo always
```
"""


@dataclass
class FakeShell:
    """Exit statuses by cell source, in order; records what was started and when."""

    script: dict[str, list[int]]
    output: bytes = b""
    events: list[str] = field(default_factory=list)
    exports: str = ""
    cwd: str = "/"
    on_wait: Callable[[], None] | None = None
    ttys: list[bool] = field(default_factory=list)  # stdin_tty of each start, in order

    def start(self, source: str, *, stdin_tty: bool = False, **_: object) -> Started:
        self.events.append(f"start {source.strip()}")
        self.ttys.append(stdin_tty)
        return Started(nonce=source, at=0.0)

    def wait(self, started: Started, output: Callable[[bytes], None], *, timeout: float | None = None) -> ShellResult:
        self.events.append(f"wait {started.nonce.strip()}")
        if self.on_wait:
            self.on_wait()
        output(self.output or started.nonce.encode())
        codes = self.script.get(started.nonce.strip(), [0])
        code = codes.pop(0) if len(codes) > 1 else codes[0]
        return ShellResult(exit_code=code)

    def run(self, source: str, output: Callable[[bytes], None], **kwargs: object) -> ShellResult:
        return self.wait(self.start(source), output)

    def interrupt(self) -> None:
        self.events.append("interrupt")

    def close(self) -> None:
        pass


def _run(script: dict[str, list[int]], **kwargs: object) -> tuple[dict[str, str], FakeShell, bytes]:
    book = parse_text(RUNBOOK, "t.md")
    plan = build(book, Selection(), Options(assume_yes=True, environ={}))
    shell = FakeShell(script)
    out = io.BytesIO()
    redactor = kwargs.pop("redactor", Redactor())
    assert isinstance(redactor, Redactor)
    report = Executor(plan, shell, redactor, Console(out, color=False), **kwargs).run()  # type: ignore[arg-type]
    return {c.label: c.status for c in report.cells}, shell, out.getvalue()


def test_all_pass_runs_success_and_always_cells() -> None:
    statuses, _, _ = _run({})
    assert statuses == {"one": "passed", "flaky": "passed", "down": "passed", "logs": "skipped", "always": "passed"}


def test_retries_then_pass() -> None:
    statuses, shell, out = _run({"echo flaky": [1, 1, 0]})
    assert statuses["flaky"] == "passed"
    assert shell.events.count("wait echo flaky") == 3
    assert b"retry 1/2" in out and b"retry 2/2" in out


def test_failure_runs_failure_and_always_cells_only() -> None:
    statuses, _, _ = _run({"echo one": [3]})
    assert statuses == {"one": "failed", "flaky": "skipped", "down": "skipped", "logs": "passed", "always": "passed"}


def test_next_cell_starts_before_the_result_is_recorded_but_never_a_danger_cell() -> None:
    _, shell, _ = _run({})
    events = shell.events
    # "flaky" is sent to bash once "one" has finished, before one's result is recorded.
    assert events.index("start echo flaky") < events.index("wait echo flaky")
    assert events.index("wait echo one") < events.index("start echo flaky")
    # The danger cell is started only after its own turn comes (a confirmation may be needed first).
    assert events.index("wait echo flaky") < events.index("start echo down")


def test_confirmation_declined_is_a_refusal() -> None:
    book = parse_text(RUNBOOK, "t.md")
    plan = build(book, Selection(), Options(interactive=True, environ={}))
    shell = FakeShell({})
    report = Executor(plan, shell, Redactor(), Console(io.BytesIO(), color=False), confirm=lambda c, s: "skip").run()
    statuses = {c.label: c.status for c in report.cells}
    assert statuses["down"] == "refused"
    assert statuses["logs"] == "passed"
    assert report.exit_code == 1


def test_output_and_labels_are_masked() -> None:
    secret = "s3cr3t-value-for-test"
    book = parse_text(RUNBOOK, "t.md")
    plan = build(book, Selection(), Options(assume_yes=True, environ={}))
    shell = FakeShell({}, output=f"token={secret}\n".encode())
    out = io.BytesIO()
    Executor(plan, shell, Redactor([Secret("A_TOKEN", secret)]), Console(out, color=False)).run()
    assert secret.encode() not in out.getvalue()
    assert b"token=***" in out.getvalue()


def test_interrupt_stops_normal_cells_and_exits_130() -> None:
    book = parse_text(RUNBOOK, "t.md")
    plan = build(book, Selection(), Options(assume_yes=True, environ={}))
    shell = FakeShell({})
    executor = Executor(plan, shell, Redactor(), Console(io.BytesIO(), color=False))
    calls = {"n": 0}

    def interrupt_once() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            executor.interrupt(130)

    shell.on_wait = interrupt_once
    report = executor.run()
    statuses = {c.label: c.status for c in report.cells}
    assert report.exit_code == 130 and report.status == "interrupted"
    assert statuses["flaky"] == "skipped" and statuses["logs"] == "passed" and statuses["always"] == "passed"


def test_a_shell_that_cannot_be_started_again_fails_the_cells_with_one_line() -> None:
    from runbook_exec.run.shell import ShellError

    book = parse_text(RUNBOOK, "t.md")
    plan = build(book, Selection(), Options(assume_yes=True, environ={}))
    shell = FakeShell({"echo one": [1]})

    def broken(started: Started, output: Callable[[bytes], None], *, timeout: float | None = None) -> ShellResult:
        if started.nonce.strip() != "echo one":
            raise ShellError("bash did not start in 10 s")
        return ShellResult(exit_code=1)

    shell.wait = broken  # type: ignore[method-assign]
    out = io.BytesIO()
    report = Executor(plan, shell, Redactor(), Console(out, color=False)).run()
    statuses = {c.label: c.status for c in report.cells}
    assert statuses["logs"] == "failed" and statuses["always"] == "failed"
    assert out.getvalue().count(b"note: the shell session is gone: bash did not start in 10 s") == 2
    assert report.exit_code == 1


RUNME = """---
runme: {id: 01J9Z3K8Q4W2E6R7T8Y9U0EXEC, version: v3}
---

```sh { name=asks }
$ read -r answer
```

```sh { name=quiet interactive=false }
echo quiet
```

```python { name=py }
print("py")
```

```sh { name=bg background=true }
sleep 1
```
"""


@pytest.mark.parametrize("terminal", [True, False])
def test_interactive_runme_cells_get_the_terminal(terminal: bool) -> None:
    book = parse_text(RUNME, "t.md")
    plan = build(book, Selection(), Options(interactive=terminal, environ={"PATH": os.defpath + ":/usr/bin"}))
    shell = FakeShell({})
    Executor(plan, shell, Redactor(), Console(io.BytesIO(), color=False)).run()
    # Interactive (Runme's default) cells read the session's terminal; interactive=false and background do not.
    assert shell.ttys == [True, False, True, False]
    assert shell.events[0] == "start read -r answer"  # the reader's "$ " prompt is not run


def test_exec_cells_get_the_terminal_only_when_asked_and_an_operator_is_there() -> None:
    text = "```bash {#a .exec interactive=true}\nread x\n```\n\n```bash {#b .exec}\necho b\n```\n"
    for terminal, expected in ((True, [True, False]), (False, [False, False])):
        plan = build(parse_text(text, "t.md"), Selection(), Options(interactive=terminal, environ={}))
        shell = FakeShell({})
        Executor(plan, shell, Redactor(), Console(io.BytesIO(), color=False)).run()
        assert shell.ttys == expected
