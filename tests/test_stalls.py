"""No stalls, through the real CLI on a pty: output that waits (a prompt, a line without newline, a value cut
by a pause) is shown within a moment of the output going quiet, never revealing the start of a secret; and
time stays linear in the length of a line."""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from pathlib import Path

import pexpect

from conftest import ROOT, run_cli

ARTIFACTS = ["--report", "r.json", "--junit", "j.xml", "--transcript", "t.log", "--no-release-log"]
SHOWN_WITHIN_S = 2.0  # released at the first idle tick (~0.25 s); generous for a busy machine


def _setup(folder: Path, *cells: str) -> tuple[str, str]:
    """A runbook with one cell per source (ids c1, c2, ...) and an env file with one random secret."""
    value = "Zq" + secrets.token_hex(10)
    (folder / "book.env").write_text(f"K_TOKEN={value}\n")
    body = "".join(f"```bash {{#c{n} .exec timeout=60}}\n{src}\n```\n\n" for n, src in enumerate(cells, 1))
    (folder / "book.md").write_text(f"# Stalls\n\n{body}")
    return "book.md", value


def _spawn(folder: Path, book: str) -> pexpect.spawn:
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(ROOT))
    return pexpect.spawn(
        sys.executable,
        ["-m", "runbook_exec.cli", book, "--env-file", "book.env", *ARTIFACTS],
        cwd=str(folder),
        env=env,
        timeout=30,
        dimensions=(40, 200),
    )


def _seconds_until(child: pexpect.spawn, text: bytes) -> float:
    t0 = time.monotonic()
    child.expect_exact(text)
    return time.monotonic() - t0


def test_a_line_without_newline_that_may_start_a_secret_shows_while_the_cell_waits(tmp_path: Path) -> None:
    book, value = _setup(tmp_path, 'echo start; printf "deploy to %s" "${K_TOKEN:0:3}"; sleep 4; echo; echo end')
    child = _spawn(tmp_path, book)
    child.expect_exact(b"start")
    # Three characters that begin the secret are shown as they are (too short to give anything away).
    assert _seconds_until(child, b"deploy to " + value[:3].encode()) < SHOWN_WITHIN_S
    child.expect_exact(b"end")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_a_prompt_read_from_the_terminal_shows_before_the_answer(tmp_path: Path) -> None:
    book, value = _setup(
        tmp_path, 'echo start; read -r -p "password for ${K_TOKEN:0:2}" answer </dev/tty; echo "got $answer"'
    )
    child = _spawn(tmp_path, book)
    child.expect_exact(b"start")
    assert _seconds_until(child, b"password for " + value[:2].encode()) < SHOWN_WITHIN_S
    child.sendline(b"fine")
    child.expect_exact(b"got fine")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_a_secret_cut_by_a_pause_never_shows_in_any_sink(tmp_path: Path) -> None:
    book, value = _setup(
        tmp_path,
        'echo start; printf "%s" "${K_TOKEN:0:6}"; sleep 1.5; printf "%s done\\n" "${K_TOKEN:6}"',
        'printf "%s" "${K_TOKEN:0:9}"; sleep 1; printf "%s" "${K_TOKEN:9:4}"; sleep 1; echo "${K_TOKEN:13}"',
    )
    child = _spawn(tmp_path, book)
    child.expect_exact(b"start")
    # The start of the secret is released as the marker while the cell waits.
    assert _seconds_until(child, b"***") < SHOWN_WITHIN_S
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    shown = (child.before or b"").decode("utf-8", "replace")
    assert "done" in shown
    sinks = {name: (tmp_path / name).read_text() for name in ("t.log", "r.json", "j.xml")} | {"terminal": shown}
    pieces = {value[i : i + 4] for i in range(len(value) - 3)}
    for name, text in sinks.items():
        found = sorted(p for p in pieces if p in text)
        assert not found, (name, found)
    assert re.search(r"\*\*\* ?done", sinks["t.log"]), sinks["t.log"]


def test_a_long_line_without_newline_takes_linear_time(tmp_path: Path) -> None:
    """20 MB in one line: seconds, not the minutes a re-scan or re-join per read would take (a bound to
    catch a hang, not a performance figure)."""
    book, _ = _setup(tmp_path, "head -c 20000000 /dev/zero | tr '\\0' x; echo; echo after")
    t0 = time.monotonic()
    result = run_cli([book, "--env-file", "book.env", *ARTIFACTS], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - t0 < 60
    assert "x" * 1000 + "\nafter" in result.stdout
    assert (tmp_path / "t.log").stat().st_size > 20_000_000
