"""Cells and the terminal, through the real CLI: an operator at a TTY (pexpect drives the runner on a pty)
can answer a cell that reads the terminal; without one such a cell fails fast; nothing a cell does to its
terminal or its shell can reach the runner's own control traffic or hang the run."""

from __future__ import annotations

import json
import os
import secrets
import sys
import termios
import time
from pathlib import Path

import pexpect

from conftest import ROOT, run_cli

ARTIFACTS = ["--report", "r.json", "--junit", "j.xml", "--transcript", "t.log", "--no-release-log"]


def _book(folder: Path, *cells: str) -> str:
    """A runbook with one cell per source, ids c1, c2, ..."""
    body = "".join(f"```bash {{#c{n} .exec timeout=60}}\n{src}\n```\n\n" for n, src in enumerate(cells, 1))
    (folder / "book.md").write_text(f"# Terminal\n\n{body}")
    return "book.md"


def _spawn(folder: Path, *args: str) -> pexpect.spawn:
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(ROOT))
    return pexpect.spawn(
        sys.executable,
        ["-m", "runbook_exec.cli", *args, *ARTIFACTS],
        cwd=str(folder),
        env=env,
        timeout=30,
        encoding="utf-8",
        dimensions=(40, 200),
    )


def _statuses(folder: Path) -> dict[str, str]:
    report = json.loads((folder / "r.json").read_text())
    return {c["id"]: c["status"] for c in report["cells"]}


def test_a_cell_reads_a_line_typed_at_the_terminal(tmp_path: Path) -> None:
    child = _spawn(tmp_path, _book(tmp_path, 'echo "ready?"; read -r answer </dev/tty; echo "got $answer"'))
    child.expect_exact("ready?")
    child.sendline("forty-two")
    child.expect_exact("got forty-two")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert _statuses(tmp_path) == {"c1": "passed"}


def test_input_typed_with_echo_off_never_reaches_output_or_transcript(tmp_path: Path) -> None:
    typed = "typed-" + secrets.token_hex(8)
    book = _book(
        tmp_path,
        'printf "password: "; read -rs pw </dev/tty; echo; echo "length ${#pw}"',
        'echo "prompt again"; read -r seen </dev/tty; echo "echoed line: $seen"',
    )
    child = _spawn(tmp_path, book)
    child.expect_exact("password:")
    child.sendline(typed)
    child.expect_exact(f"length {len(typed)}")
    child.expect_exact("prompt again")
    child.sendline("visible-text")
    child.expect_exact("echoed line: visible-text")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    out = child.before or ""
    transcript = (tmp_path / "t.log").read_text()
    assert typed not in out and typed not in transcript
    # With echo on, the pty echoes what is typed: that shows, as on any terminal.
    assert transcript.count("visible-text") == 2


def test_without_a_terminal_a_cell_waiting_for_input_fails_within_seconds(tmp_path: Path) -> None:
    book = _book(tmp_path, "echo asking; read -r answer </dev/tty; echo never", "echo skipped")
    result = run_cli([book, *ARTIFACTS], cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.seconds < 10
    lines = [line for line in result.stdout.splitlines() if "waits for terminal input" in line]
    assert len(lines) == 1, result.stdout
    assert "c1" in lines[0]
    assert "never" not in result.stdout
    assert _statuses(tmp_path) == {"c1": "failed", "c2": "skipped"}


def test_stty_in_a_cell_does_not_disturb_later_cells(tmp_path: Path) -> None:
    book = _book(
        tmp_path,
        "stty sane </dev/tty; stty echo </dev/tty; stty icanon onlcr </dev/tty; echo changed",
        "stty -echo -icanon </dev/tty; echo raw",
        'echo "line two"; read -r answer </dev/tty; echo "answer=$answer"',
        "echo done",
    )
    child = _spawn(tmp_path, book)
    child.expect_exact("line two")
    child.sendline("typed")
    child.expect_exact("answer=typed")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    transcript = (tmp_path / "t.log").read_text()
    assert "__rx" not in transcript and "__rx" not in (child.before or "")
    assert "\r" not in transcript  # the earlier cell's onlcr did not stay
    assert _statuses(tmp_path) == {"c1": "passed", "c2": "passed", "c3": "passed", "c4": "passed"}
    # Without a terminal too.
    result = run_cli([_book(tmp_path, "stty sane </dev/tty || true; echo one", "echo two"), *ARTIFACTS], tmp_path)
    assert result.returncode == 0 and "two" in result.stdout


def test_cells_that_change_the_shell_cannot_hang_the_run(tmp_path: Path) -> None:
    book = _book(
        tmp_path,
        "export KEPT=yes",
        "exec >/dev/null 2>&1; echo hidden",
        "unset PROMPT_COMMAND; echo alive-1",
        "PS1='x> '; PS2=; PS4=; echo alive-2",
        "exec bash",
        'echo "alive-3 kept=$KEPT"',
        "continue",
        'echo "alive-4 kept=$KEPT"',
    )
    t0 = time.monotonic()
    result = run_cli([book, *ARTIFACTS], cwd=tmp_path, timeout=60)
    assert time.monotonic() - t0 < 30
    assert result.returncode == 1  # `continue` outside a loop fails its cell
    out = result.stdout
    assert "hidden" not in out
    for line in ("alive-1", "alive-2", "alive-3 kept=yes"):
        assert line in out, out
    assert "note: the cell ended the shell" in out  # exec bash
    assert "note: the cell took over the shell's command input" in out  # continue
    statuses = _statuses(tmp_path)
    assert statuses["c5"] == "passed" and statuses["c7"] == "failed" and statuses["c8"] == "skipped"


def test_the_operators_terminal_is_restored_after_each_cell(tmp_path: Path) -> None:
    (tmp_path / "book.md").write_text(
        '# T\n\n```bash {#ask .exec}\necho asking; read -r a </dev/tty; echo "got $a"\n```\n\n'
        '```bash {#down .exec .danger}\necho "danger ran"\n```\n'
    )
    child = _spawn(tmp_path, "book.md")
    child.expect_exact("asking")
    time.sleep(0.3)
    during = termios.tcgetattr(child.child_fd)[3]
    assert not during & termios.ICANON and not during & termios.ECHO and during & termios.ISIG
    child.sendline("yes")
    child.expect_exact("Run it? [y/N]")
    after = termios.tcgetattr(child.child_fd)[3]
    assert after & termios.ICANON and after & termios.ECHO
    child.sendline("y")
    child.expect_exact("danger ran")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


GETPASS = 'python3 -c \'import getpass; print("length", len(getpass.getpass("Password: ")))\''


def test_a_password_prompt_of_a_real_program(tmp_path: Path) -> None:
    """getpass reads /dev/tty with echo off, as sudo and ssh do."""
    secret = "pw-" + secrets.token_hex(6)
    child = _spawn(tmp_path, _book(tmp_path, GETPASS))
    child.expect_exact("Password:")
    child.sendline(secret)
    child.expect_exact(f"length {len(secret)}")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert secret not in (child.before or "") and secret not in (tmp_path / "t.log").read_text()
    t0 = time.monotonic()
    result = run_cli([_book(tmp_path, GETPASS), *ARTIFACTS], cwd=tmp_path, timeout=60)
    assert result.returncode == 1 and time.monotonic() - t0 < 10
    assert "waits for terminal input" in result.stdout
