"""The rollout (``--target``, repeatable): real CLI, real bash, one record per target.

The engines are answered by a stand-in docker CLI (``fixtures/targets/bin/docker``): these tests are about
the rollout's own logic (order, first failure stops it, ``--keep-going``, "not run", Ctrl-C, ``--resume``,
per-target env files / vars / TAG_PREV / records / locks, prefixed output, the final table). Real engines,
contexts and ssh are in test_e2e_targets.py; the real docker CLI's answers in test_targets.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pexpect
import pytest

from runbook_exec.doc import document
from runbook_exec.records import release_log
from runbook_exec.run import lock
from runbook_exec.run.prefix import LinePrefixer
from runbook_exec.site import pages as site_pages

from conftest import FIXTURES, ROOT, Completed, run_cli, wait_exit
from site_support import parse_html

TARGETS = FIXTURES / "targets"
ENV_FILES = ("a", "b", "default", "other")


@dataclass(frozen=True)
class Work:
    """A copy of the fixture folder with fresh secrets, and the environment that puts the stand-in first."""

    dir: Path
    env: dict[str, str]
    secrets: dict[str, str]  # env file stem -> its APP_SECRET

    def run(self, *args: str, timeout: float = 60) -> Completed:
        return run_cli(["rollout.md", *args], cwd=self.dir, env=self.env, timeout=timeout)

    def records(self) -> list[release_log.Record]:
        return release_log.records(self.dir / "release.log")

    def digest(self, stem: str) -> str:
        return hashlib.sha256(self.secrets[stem].encode()).hexdigest()[:12]

    def switch(self, name: str, on: bool = True) -> None:
        path = self.dir / name
        if on:
            path.touch()
        else:
            path.unlink()


@pytest.fixture
def work(tmp_path: Path) -> Work:
    folder = tmp_path / "work"
    folder.mkdir()
    shutil.copy(TARGETS / "rollout.md", folder)
    values = {stem: f"{stem}-{secrets.token_hex(12)}" for stem in ENV_FILES}
    for stem, value in values.items():
        (folder / f"{stem}.env").write_text(f"APP_SECRET={value}\n", encoding="utf-8")
    env = {
        "PATH": f"{TARGETS / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "TAG": "",
        "NO_COLOR": "1",
    }
    return Work(folder, env, values)


def _lines(text: str, target: str) -> list[str]:
    """The live output lines of one target (prefix stripped)."""
    return [line.split(" | ", 1)[1] for line in text.splitlines() if line.startswith(f"{target} ")]


def _no_secret(work: Work, *texts: str) -> None:
    for value in work.secrets.values():
        for text in texts:
            assert value not in text
        for path in work.dir.rglob("*"):
            if path.is_file() and path.suffix != ".env":
                assert value.encode() not in path.read_bytes(), path


def test_targets_run_in_order_and_the_first_failure_stops_the_rollout(work: Work) -> None:
    work.switch("fail-b")
    done = work.run("--var", "TAG=t1", "--target", "a", "--target", "b", "--target", "c")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    # Every live line of a target carries its name; headers and the table do not.
    assert out.index("== target a (tcp://engine-a:2376, engine host engine-a) [1/3]") < out.index("== target b")
    assert "== target c" not in out
    assert f"on=a engine=engine-a port=8081 prev=none env={work.digest('a')}" in _lines(out, "a")
    assert f"on=b engine=engine-b port=8082 prev=none env={work.digest('b')}" in _lines(out, "b")
    assert "secret=***" in _lines(out, "a") and "secret=***" in _lines(out, "b")
    assert not _lines(out, "c")
    assert re.search(r"(?m)^  c +context ctx-c +- +not run +- +-$", out), out
    assert out.rstrip().endswith("not run: c")
    assert "rollout failed (exit 1):" in out

    a, b = work.records()
    assert (a.target, a.status, a.deployed, a.meta["engine_host"]) == ("a", "passed", "t1", "engine-a")
    assert (b.target, b.status, b.deployed, b.meta["engine_host"]) == ("b", "failed", None, "engine-b")
    assert "target: a (engine host engine-a)" in a.body
    assert "Minimum Failure Record" in b.body and "failed step: deploy" in b.body
    # Each target has its own run folder, report and JUnit suite.
    folders = sorted((work.dir / ".runbook" / "runs").iterdir())
    assert [f.name.rsplit("-", 1)[-1] for f in folders] == ["a", "b"]
    report = json.loads((folders[1] / "report.json").read_text(encoding="utf-8"))
    assert (report["target"], report["engine_host"], report["status"]) == ("b", "engine-b", "failed")
    suite = ET.parse(folders[1] / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "rollout.md [b]" and suite.get("hostname") == "engine-b"
    _no_secret(work, done.stdout, done.stderr)


def test_keep_going_runs_every_target_and_still_fails(work: Work) -> None:
    work.switch("fail-b")
    done = work.run("--var", "TAG=t1", "--target", "a", "--target", "b", "--target", "c", "--keep-going")
    assert done.returncode == 1, done.stdout + done.stderr
    assert [(r.target, r.status) for r in work.records()] == [("a", "passed"), ("b", "failed"), ("c", "passed")]
    assert f"on=c engine=engine-ctx-c port= prev=none env={work.digest('default')}" in _lines(done.stdout, "c")
    assert "not run:" not in done.stdout


def test_tag_prev_comes_from_the_targets_own_records(work: Work) -> None:
    assert work.run("--var", "TAG=t1", "--target", "a", "--target", "b").returncode == 0
    assert work.run("--var", "TAG=t2", "--target", "a").returncode == 0
    work.switch("fail-b")
    failed = work.run("--var", "TAG=t3", "--target", "b")
    assert failed.returncode == 1
    # a has deployed t1 then t2; b only t1 (its t3 failed). Neither history leaks into the other's TAG_PREV,
    # and a run without --target (another engine: the default one) has none of theirs.
    dry = work.run("--var", "TAG=t4", "--target", "a", "--target", "b", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plans = {t["target"]["name"]: t["plan"] for t in json.loads(dry.stdout)["targets"]}
    assert plans["a"]["variables"]["TAG_PREV"] == "t2"
    assert plans["b"]["variables"]["TAG_PREV"] == "t1"
    untargeted = work.run("--var", "TAG=t4", "--dry-run", "--json")
    assert not json.loads(untargeted.stdout)["variables"].get("TAG_PREV")
    # A rollback of b from t3 goes back to b's t1, not to a's t2.
    assert release_log.last_successful(work.dir / "release.log", exclude="t3", target="b") == "t1"
    assert release_log.last_successful(work.dir / "release.log", exclude="t3", target="a") == "t2"


def test_env_file_and_vars_per_target(work: Work) -> None:
    """A target's own env file wins over --env-file; --var wins over a target's vars."""
    done = work.run(
        "--var", "TAG=t1", "--var", "HTTP_PORT=9999", "--env-file", "other.env", "--target", "a", "--target", "c"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"on=a engine=engine-a port=9999 prev=none env={work.digest('a')}" in _lines(done.stdout, "a")
    assert f"on=c engine=engine-ctx-c port=9999 prev=none env={work.digest('other')}" in _lines(done.stdout, "c")
    _no_secret(work, done.stdout, done.stderr)


def test_one_target_is_not_prefixed(work: Work) -> None:
    done = work.run("--var", "TAG=t1", "--target", "c")
    assert done.returncode == 0, done.stderr
    assert "\non=c engine=engine-ctx-c" in done.stdout
    assert [r.target for r in work.records()] == ["c"]


def test_resume_resumes_the_failed_target_then_goes_on(work: Work) -> None:
    work.switch("fail-b")
    args = ("--var", "TAG=t1", "--target", "a", "--target", "b", "--target", "c")
    assert work.run(*args).returncode == 1
    work.switch("fail-b", on=False)
    done = work.run(*args, "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "== target a" not in done.stdout
    assert "resuming at deploy in" in done.stdout
    assert "deployed t1 on b" in _lines(done.stdout, "b") and "deployed t1 on c" in _lines(done.stdout, "c")
    assert re.search(r"(?m)^  a +tcp://engine-a:2376 +- +done earlier", done.stdout), done.stdout
    assert [(r.target, r.status) for r in work.records()] == [
        ("a", "passed"),
        ("b", "failed"),
        ("b", "passed"),
        ("c", "passed"),
    ]
    again = work.run(*args, "--resume")
    assert again.returncode == 2
    assert again.stderr.count("nothing to resume") == 3, again.stderr


ROLLOUT = ("--var", "TAG=t1", "--target", "a", "--target", "b", "--target", "c")


def _start_until(work: Work, args: Sequence[str], text: bytes) -> tuple[subprocess.Popen[bytes], bytes]:
    """Start the real CLI without a terminal; read its stdout until ``text`` shows (the cell is running)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook_exec.cli", "rollout.md", *args],
        cwd=work.dir,
        env={**os.environ, **work.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 60
    while text not in seen and time.monotonic() < deadline:
        seen += proc.stdout.readline()
    assert text in seen, seen
    return proc, seen


def test_interrupt_stops_the_current_target_and_starts_no_further(work: Work) -> None:
    work.switch("slow-b")
    proc, seen = _start_until(work, ROLLOUT, b"waiting on b ...")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    out = (seen + rest).decode()
    assert proc.returncode == 130, out + err.decode()
    assert time.monotonic() - t0 < 25, "the sleeping cell was not interrupted"
    assert "== target c" not in out and out.rstrip().endswith("not run: c")
    assert [(r.target, r.status) for r in work.records()] == [("a", "passed"), ("b", "interrupted")]


def test_a_hang_up_during_a_target_leaves_its_record_and_starts_no_further(work: Work) -> None:
    """The terminal goes away (SSH dropped) while b runs: b is stopped as a single run is (exit 129, its
    record written), c never starts, and the rollout's own summary is still written."""
    work.switch("slow-b")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "runbook_exec.cli", "rollout.md", *ROLLOUT, "--report", "out/rollout.json"],
        cwd=str(work.dir),
        env={**os.environ, **work.env, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    child.expect_exact("waiting on b ...")
    t0 = time.monotonic()
    os.close(child.child_fd)  # the kernel sends SIGHUP; later writes to the terminal fail with EIO
    child.closed = True
    code = wait_exit(child.pid, 60)
    assert code == 129
    assert time.monotonic() - t0 < 25, "the sleeping cell was not stopped"
    a, b = work.records()
    assert (a.target, a.status) == ("a", "passed")
    assert (b.target, b.status, b.meta["exit_code"], b.meta["failed_step"]) == ("b", "interrupted", 129, "slow")
    summary = json.loads((work.dir / "out" / "rollout.json").read_text(encoding="utf-8"))
    assert (summary["status"], summary["exit_code"], summary["not_run"]) == ("interrupted", 129, ["c"])
    folders = sorted((work.dir / ".runbook" / "runs").iterdir())
    assert [f.name.rsplit("-", 1)[-1] for f in folders] == ["a", "b"]
    report = json.loads((folders[1] / "report.json").read_text(encoding="utf-8"))
    assert (report["interrupted"], report["exit_code"], report["target"]) == (True, 129, "b")


def test_a_killed_rollout_is_recorded_and_resumed_per_target(work: Work) -> None:
    """kill -9 while b runs: runs against other targets (or none) leave b's unfinished run alone; the next
    rollout naming b records it as aborted (target b) and --resume continues b at the cell that was running."""
    work.switch("slow-b")
    proc, _ = _start_until(work, ROLLOUT, b"waiting on b ...")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    untargeted = work.run("--var", "TAG=t1", "--cell", "where")
    assert untargeted.returncode == 0, untargeted.stdout + untargeted.stderr
    other = work.run("--var", "TAG=t1", "--target", "a")
    assert other.returncode == 0, other.stdout + other.stderr
    assert "aborted" not in untargeted.stderr + other.stderr
    assert [(r.target, r.status) for r in work.records()] == [("a", "passed"), (None, "passed"), ("a", "passed")]

    work.switch("slow-b", on=False)
    resumed = work.run(*ROLLOUT, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "an earlier run against target b (started" in resumed.stderr
    assert "stopped while cell slow was running; recorded as aborted" in resumed.stderr
    assert "resuming at slow in" in resumed.stdout and "== target a" not in resumed.stdout
    records = work.records()
    assert [(r.target, r.status) for r in records[3:]] == [("b", "aborted"), ("b", "passed"), ("c", "passed")]
    aborted = records[3]
    assert (aborted.meta["failed_step"], aborted.meta["engine_host"], aborted.meta["exit_code"]) == (
        "slow",
        "engine-b",
        None,
    )
    assert "target: b (engine host engine-b)" in aborted.body
    _no_secret(work, resumed.stdout, resumed.stderr)


def test_the_target_and_its_engine_are_the_runners_own_fields(work: Work) -> None:
    """An env file value equal to the target's name (and so to part of its engine's name) is masked in what
    the cells print, but neither masks the record's, report's and JUnit suite's target nor counts as a leak."""
    (work.dir / "default.env").write_text(
        f"APP_SECRET={work.secrets['default']}\nSITE_NAME=ctx-common\n", encoding="utf-8"
    )
    done = work.run("--var", "TAG=t1", "--target", "ctx-common")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "secret leak" not in done.stderr
    assert "on=*** engine=engine-*** " in done.stdout
    [folder] = (work.dir / ".runbook" / "runs").iterdir()
    assert folder.name.endswith("-ctx-common")
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert (report["target"], report["engine_host"]) == ("ctx-common", "engine-ctx-common")
    suite = ET.parse(folder / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("name"), suite.get("hostname")) == ("rollout.md [ctx-common]", "engine-ctx-common")
    [record] = work.records()
    assert (record.target, record.meta["engine_host"], record.status) == ("ctx-common", "engine-ctx-common", "passed")


def test_lock_is_per_runbook_and_target(work: Work, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work.dir)
    with lock.hold("rollout.md", target="b"):
        busy = work.run("--var", "TAG=t1", "--target", "a", "--target", "b")
        assert busy.returncode == 2, busy.stdout + busy.stderr
        assert "another run of this runbook against target b is in progress here" in busy.stderr
        assert not (work.dir / "release.log").exists(), "a target ran although the rollout could not start"
        free = work.run("--var", "TAG=t1", "--target", "a")
        assert free.returncode == 0, free.stderr
    assert lock.lock_path("rollout.md", target="a") != lock.lock_path("rollout.md", target="b")
    assert lock.lock_path("rollout.md", target="a") != lock.lock_path("rollout.md")


def test_dry_run_and_list_show_each_target_without_contacting_engines(work: Work) -> None:
    dry = work.run("--var", "TAG=t1", "--target", "down", "--target", "a", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    data = json.loads(dry.stdout)
    assert [t["target"]["name"] for t in data["targets"]] == ["down", "a"]
    [a] = [t for t in data["targets"] if t["target"]["name"] == "a"]
    assert a["engine"] == "tcp://engine-a:2376" and a["target"]["vars"] == {"HTTP_PORT": "8081"}
    assert [c["id"] for c in a["plan"]["cells"]] == ["where", "slow", "deploy"]
    text = work.run("--var", "TAG=t1", "--target", "a", "--target", "c", "--dry-run")
    assert text.returncode == 0, text.stderr
    assert "== target a (tcp://engine-a:2376) [1/2]  [env_file a.env, HTTP_PORT=8081]" in text.stdout
    listed = work.run("--list", "--json", "--target", "c", "--target", "a")
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)["targets"]] == ["c", "a"]
    assert not (work.dir / "release.log").exists()


def test_report_and_junit_summarize_the_rollout(work: Work) -> None:
    work.switch("fail-b")
    done = work.run(
        "--var", "TAG=t1", "--target", "a", "--target", "b", "--target", "c",
        "--report", "out/rollout.json", "--junit", "out/rollout.xml",
    )  # fmt: skip
    assert done.returncode == 1
    summary: dict[str, Any] = json.loads((work.dir / "out" / "rollout.json").read_text(encoding="utf-8"))
    assert (summary["status"], summary["exit_code"], summary["not_run"]) == ("failed", 1, ["c"])
    rows = {t["name"]: t for t in summary["targets"]}
    assert [rows[n]["status"] for n in "abc"] == ["passed", "failed", "not run"]
    assert rows["a"]["engine_host"] == "engine-a" and rows["a"]["record"] == work.records()[0].run_id
    assert json.loads((work.dir / rows["b"]["report"]).read_text(encoding="utf-8"))["target"] == "b"
    suites = ET.parse(work.dir / "out" / "rollout.xml").getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["rollout.md [a]", "rollout.md [b]", "rollout.md [c]"]
    assert suites[1].get("failures") == "1" and suites[2].get("skipped") == "1"


PROMPTED = """---
runme: {id: 01J9Z3K8Q4W2E6R7T8Y9U0TARG, version: v3}
runbook:
  targets:
    a: {docker_host: "tcp://engine-a:2376"}
    b: {docker_host: "tcp://engine-b:2376"}
---

```sh { name=placeholder }
$ export DEPLOY_ENV="staging"
$ echo "env=$DEPLOY_ENV on=$RUNBOOK_TARGET"
```
"""


def test_runme_prompts_are_asked_once_before_any_target_runs(work: Work) -> None:
    (work.dir / "README.md").write_text(PROMPTED, encoding="utf-8")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "runbook_exec.cli", "README.md", "--no-release-log", "--target", "a", "--target", "b"],
        cwd=str(work.dir),
        env={**os.environ, **work.env, "PYTHONPATH": str(ROOT)},
        timeout=60,
        encoding="utf-8",
    )
    child.expect_exact("Set environment variable DEPLOY_ENV [staging]: ")
    assert "== target" not in child.before
    child.sendline("qa")
    child.expect(pexpect.EOF)
    child.close()
    out = child.before
    assert child.exitstatus == 0, out
    assert "a | env=qa on=a" in out and "b | env=qa on=b" in out
    assert "Set environment variable" not in out


def test_the_release_history_page_shows_each_records_target_and_engine(work: Work) -> None:
    work.switch("fail-b")
    assert work.run(*ROLLOUT, "--keep-going").returncode == 1
    assert work.run("--var", "TAG=t2", "--cell", "where").returncode == 0
    history = site_pages.History(
        runbook_path="rollout.md",
        book=document.parse(str(work.dir / "rollout.md")),
        log_path="release.log",
        records=tuple(work.records()),
        page_url="../rollout/",
    )
    shown = parse_html(site_pages.history_html([history])).find_all("article", "runbook-record")
    # Newest first: the run without a target, then c, b, a.
    assert [r.attrs.get("data-runbook-record-target") for r in shown] == [None, "c", "b", "a"]
    untargeted, c, b, _ = shown
    assert not untargeted.find_all("span", "runbook-record__target") and "대상" not in untargeted.text()
    assert [n.text() for n in b.find_all("span", "runbook-record__target")] == ["대상 b"]
    terms = [n.text() for n in b.iter() if n.tag in ("dt", "dd")]
    assert terms[terms.index("대상") + 1] == "b · 엔진 호스트 engine-b"
    assert "c · 엔진 호스트 engine-ctx-c" in c.text()
    assert b.attrs["data-runbook-record-status"] == "failed"


BAD = {
    "unreachable": (
        ["--target", "a", "--target", "down"],
        r"^rollout\.md:\d+: target down \(tcp://down\.invalid:2376\): engine unreachable: Cannot connect",
    ),
    "unknown": (["--target", "a", "--target", "nope"], r"^runbook-exec: --target nope: unknown target"),
    "transcript": (["--target", "a", "--transcript", "t.log"], r"^runbook-exec: --transcript names one file"),
    "keep-going-alone": (["--keep-going"], r"^runbook-exec: --keep-going needs --target"),
    "bad-var": (["--target", "a", "--target", "b", "--var", "TAG=Bad"], r"^rollout\.md:\d+: variable TAG='Bad' does"),
}


@pytest.mark.parametrize(("args", "message"), BAD.values(), ids=BAD.keys())
def test_bad_input_is_exit_2_and_runs_nothing(work: Work, args: list[str], message: str) -> None:
    done = work.run(*(["--var", "TAG=t1"] if "TAG=Bad" not in args else []), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.search(message, done.stderr), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (work.dir / "release.log").exists() and not (work.dir / ".runbook" / "runs").exists()


def test_a_problem_of_one_target_names_it(work: Work) -> None:
    (work.dir / "b.env").unlink()
    done = work.run("--var", "TAG=t1", "--target", "a", "--target", "b")
    assert done.returncode == 2
    assert done.stderr.strip() == "b.env: no such file (env file) (target b)"
    assert not (work.dir / "release.log").exists()


# -- prefixing -------------------------------------------------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[_Sink]:
    yield _Sink()


def test_prefix_goes_where_lines_start_whatever_the_writes(sink: _Sink) -> None:
    out = LinePrefixer(sink, b"a | ")  # type: ignore[arg-type]
    for chunk in (b"one\ntw", b"o", b"\n", b"\nthree\nfour", b"\n"):
        out.write(chunk)
    assert sink.data == b"a | one\na | two\na | \na | three\na | four\n"
