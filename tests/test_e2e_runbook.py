"""ops/deploy.md end to end: the real CLI drives the real runbook on a real Docker Engine.

One stack shared by six steps, in order (module-scoped fixture):

1. ``init-env``, then ``--section rehearsal`` with TAG A: three healthy services, smoke through nginx, the
   authenticated call, a passed release record for A.
2. The rehearsal with TAG B: a passed record for B whose TAG_PREV is A.
3. ``--section rollback --yes`` (TAG B): the running containers use the A images again; a rollback record.
4. Failure drill (``SAMPLE_FAIL_ON_START=1``, TAG C): the deploy fails, the ``when=failure`` cells collect
   ``ps`` and ``logs --tail=200``, a failed record with the Minimum Failure Record, exit status 1.
5. No generated secret value, in any printed form, in any artifact or captured output.
6. The site built from the passed rehearsals' reports and the release.log shows that evidence.

The stack is torn down (``down -v``, its images and volumes removed) even when a step fails. Each step's
wall time is printed and recorded as a JUnit property. Engine rules as in test_e2e_stack.py: skipped with a
one-line reason without an engine, failed instead when RUNBOOK_E2E=required.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_e2e_stack import _base_images, _free_port, _need_engine

from runbook_exec.ops.envfile import parse_env_file
from runbook_exec.records import release_log
from runbook_exec.secrets.masking import Redactor, Secret

from compose_env import COMPOSE_FILE, ROOT, clean_environ, compose_command, generated_env, sample_keys, write_env_file
from site_evidence import check_rehearsal_site

pytestmark = pytest.mark.e2e

RUNBOOK = "ops/deploy.md"
# service -> image repository in docker-compose.prod.yml
IMAGES = {"db": "db", "backend": "backend", "nginx": "frontend"}
FAILURE_CELLS = ("failure-ps", "failure-logs")
# Generous no-hang bound per CLI run (a cold first build on a fresh machine included).
RUN_TIMEOUT = 1500


@dataclass(frozen=True)
class Run:
    """One finished ``runbook-exec`` invocation and where its artifacts are."""

    args: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float
    folder: Path | None

    def output(self) -> str:
        """The (masked) terminal output, for assertion messages."""
        return (self.stdout[-4000:] + b"\n--- stderr ---\n" + self.stderr[-3000:]).decode("utf-8", "replace")

    def report(self) -> dict[str, Any]:
        assert self.folder is not None
        data: dict[str, Any] = json.loads((self.folder / "report.json").read_text(encoding="utf-8"))
        return data

    def cells(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.report()["cells"] if c["id"]}

    def transcript(self) -> str:
        assert self.folder is not None
        return (self.folder / "transcript.log").read_text(encoding="utf-8", errors="replace")


@dataclass(frozen=True)
class Rehearsal:
    """The shared state of the steps: one compose project, one env file, one release log."""

    root: Path
    env: dict[str, str]
    env_file: Path
    release_log: Path
    port: int
    tags: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def cli(self, name: str, *args: str, extra: dict[str, str] | None = None) -> Run:
        """Run the real CLI from the repo root with this stack's environment; keep stdout/stderr as bytes."""
        folder = None
        if not args or args[0] != "init-env":
            folder = self.root / name
            args = (
                *args,
                "--env-file",
                str(self.env_file),
                "--release-log",
                str(self.release_log),
                "--transcript",
                str(folder / "transcript.log"),
                "--report",
                str(folder / "report.json"),
                "--junit",
                str(folder / "junit.xml"),
            )
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "runbook_exec.cli", *args],
            cwd=ROOT,
            env=clean_environ({**self.env, **(extra or {})}),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        run = Run(tuple(args), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0, folder)
        self.runs.append(run)
        return run

    def deploy(self, name: str, section: str, tag: str, *more: str, extra: dict[str, str] | None = None) -> Run:
        return self.cli(name, RUNBOOK, "--section", section, "--var", f"TAG={tag}", *more, extra=extra)

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        compose = compose_command()
        assert compose is not None
        env = {**self.env, "TAG": self.tags["A"], "ENV_FILE": str(self.env_file)}
        return subprocess.run(
            [*compose, "--env-file", str(self.env_file), "-f", str(COMPOSE_FILE), *args],
            cwd=ROOT,
            env=clean_environ(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ps(self) -> dict[str, dict[str, Any]]:
        """``docker compose ps --format json``, one row per service."""
        ps = self.compose("ps", "--format", "json", timeout=60)
        assert ps.returncode == 0, ps.stderr
        rows = [json.loads(line) for line in ps.stdout.splitlines() if line.strip()]
        return {row["Service"]: row for row in rows}

    def running_images(self) -> dict[str, tuple[str, str]]:
        """Per service: the image reference its container was created from, and that image's id."""
        found = {}
        for service, row in self.ps().items():
            out = subprocess.run(
                ["docker", "inspect", "--format", "{{.Config.Image}} {{.Image}}", row["ID"]],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout.split()
            found[service] = (out[0], out[1])
        return found

    def record(self, name: str, t0: float) -> float:
        seconds = round(time.monotonic() - t0, 1)
        self.seconds[name] = seconds
        print(f"\ne2e {name}: {seconds:.1f}s")
        return seconds


def _image_id(reference: str) -> str:
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", reference],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"{reference}: {proc.stderr.strip()}"
    return proc.stdout.strip()


def _tags() -> dict[str, str]:
    """Three distinct git-short-SHA-shaped TAGs, unique to this run (images are named db:<TAG>, ...)."""
    tags: set[str] = set()
    while len(tags) < 3:
        tags.add(secrets.token_hex(4)[:7])
    return dict(zip("ABC", sorted(tags), strict=True))


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    _need_engine()
    root = tmp_path_factory.mktemp("runbook-e2e")
    port = _free_port()
    env = {
        # A project of its own, on loopback: never touches a stack another run (or the operator) has up.
        "COMPOSE_PROJECT_NAME": "runbook-e2e-rb-" + secrets.token_hex(3),
        "HTTP_BIND": "127.0.0.1",
        "HTTP_PORT": str(port),
        **_base_images(),
    }
    r = Rehearsal(root, env, root / "rehearsal.env", root / "release.log", port, _tags())
    try:
        yield r
    finally:
        _teardown(r)


def _teardown(r: Rehearsal) -> None:
    """``down -v`` and remove every image the steps built, whatever state the steps left."""
    t0 = time.monotonic()
    if not r.env_file.exists():
        # Step 1 failed before init-env: compose still needs the env file to interpolate the project.
        write_env_file(r.env_file, generated_env())
    down = r.compose("down", "-v", "--remove-orphans", "--timeout", "5")
    images = [f"{image}:{tag}" for image in IMAGES.values() for tag in r.tags.values()]
    present = [
        ref
        for ref in images
        if subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False).returncode == 0
    ]
    if present:
        subprocess.run(["docker", "image", "rm", "--force", *present], capture_output=True, timeout=300, check=False)
    label = f"label=com.docker.compose.project={r.env['COMPOSE_PROJECT_NAME']}"
    left = {
        kind: subprocess.run(
            ["docker", kind, "ls", "-q", "--filter", label], capture_output=True, text=True, check=False
        ).stdout.split()
        for kind in ("container", "volume", "network")
    }
    for volume in left["volume"]:
        subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True, check=False)
    r.record("teardown", t0)
    print("e2e times: " + ", ".join(f"{k} {v:.1f}s" for k, v in r.seconds.items()))
    assert down.returncode == 0, down.stderr
    assert not left["container"] and not left["network"], left


def _last_record(r: Rehearsal) -> release_log.Record:
    records = release_log.records(r.release_log)
    assert records, f"{r.release_log}: no intact record"
    return records[-1]


def _assert_passed(run: Run) -> None:
    assert run.returncode == 0, run.output()
    cells = run.report()["cells"]
    for cell in cells:
        expected = "skipped" if cell["when"] == "failure" else "passed"
        assert cell["status"] == expected, (cell, run.output())


def _assert_healthy_at(r: Rehearsal, tag: str) -> None:
    rows = r.ps()
    assert {s: row["Health"] for s, row in rows.items()} == dict.fromkeys(IMAGES, "healthy")
    assert {s: row["Image"] for s, row in rows.items()} == {s: f"{image}:{tag}" for s, image in IMAGES.items()}


@pytest.fixture
def r(rehearsal: Rehearsal, request: pytest.FixtureRequest, record_property: Any) -> Iterator[Rehearsal]:
    """The shared stack, with the step's wall time (CLI runs and checks) printed and kept as a JUnit property."""
    t0 = time.monotonic()
    yield rehearsal
    record_property("seconds", rehearsal.record(request.node.name, t0))


def test_1_rehearsal_from_a_fresh_env_file(r: Rehearsal) -> None:
    """init-env, then the rehearsal with TAG A: healthy, smoke through nginx, authenticated call, record."""
    init = r.cli("init-env", "init-env", "--sample", ".env.sample", "--out", str(r.env_file))
    assert init.returncode == 0, init.output()
    assert r.env_file.stat().st_mode & 0o777 == 0o600
    assert sorted(parse_env_file(r.env_file)) == sorted(sample_keys())

    tag = r.tags["A"]
    run = r.deploy("rehearsal-A", "rehearsal", tag)
    _assert_passed(run)
    cells = run.cells()
    for cid in ("rehearsal-preflight", "compose-up", "wait-healthy", "smoke-front", "smoke-openapi", "smoke-auth"):
        assert cells[cid]["status"] == "passed", cid
    _assert_healthy_at(r, tag)
    # The port the smoke cells used is nginx's, published on loopback only.
    with urllib.request.urlopen(f"http://127.0.0.1:{r.port}/api/openapi.json", timeout=10) as response:
        assert response.status == 200
    assert r.compose("port", "nginx", "80", timeout=60).stdout.strip() == f"127.0.0.1:{r.port}"

    record = _last_record(r)
    assert record.status == "passed" and record.meta["kind"] == "deploy"
    assert record.variables["TAG"] == tag and record.deployed == tag
    assert "- [x] `GET /api/v1/collections`" in record.body
    assert release_log.last_successful(r.release_log) == tag


def test_2_redeploy_records_tag_prev(r: Rehearsal) -> None:
    """The rehearsal with TAG B: a passed record for B whose TAG_PREV is A."""
    a, b = r.tags["A"], r.tags["B"]
    run = r.deploy("rehearsal-B", "rehearsal", b)
    _assert_passed(run)
    assert run.report()["variables"]["TAG_PREV"] == a
    _assert_healthy_at(r, b)
    record = _last_record(r)
    assert record.status == "passed" and record.deployed == b
    assert record.variables["TAG"] == b and record.variables["TAG_PREV"] == a
    assert f"TAG_PREV: {a}" in record.body
    assert release_log.last_successful(r.release_log) == b


def test_3_rollback_runs_the_previous_images_again(r: Rehearsal) -> None:
    """``--section rollback --yes`` for TAG B: every container runs the A image again; a rollback record."""
    a, b = r.tags["A"], r.tags["B"]
    run = r.deploy("rollback", "rollback", b, "--yes")
    _assert_passed(run)
    # TAG_PREV comes from release.log (no --var TAG_PREV): the last successful deploy before the TAG being
    # rolled back, never that TAG itself (which is what is in service when a rollback is asked for).
    prev = run.report()["variables"].get("TAG_PREV")
    assert prev == a, f"rollback of TAG={b}: TAG_PREV resolved to {prev}, expected {a} (the deploy before {b})"
    running = r.running_images()
    assert {s: ref for s, (ref, _) in running.items()} == {s: f"{image}:{a}" for s, image in IMAGES.items()}
    for service, (ref, image_id) in running.items():
        assert image_id == _image_id(ref), service
    _assert_healthy_at(r, a)
    record = _last_record(r)
    assert record.status == "passed" and record.meta["kind"] == "rollback"
    assert record.deployed == a and record.variables["TAG_PREV"] == a
    assert release_log.last_successful(r.release_log) == a


def test_4_failure_drill_collects_evidence_and_records_it(r: Rehearsal) -> None:
    """A backend that exits at start (TAG C): deploy fails, ps/logs collected, Minimum Failure Record, exit 1."""
    c = r.tags["C"]
    # What the log says is in service (A after a correct rollback); the drill's TAG_PREV and rollback verdict.
    prev = release_log.last_successful(r.release_log)
    assert prev is not None
    run = r.deploy("failure-C", "rehearsal", c, extra={"SAMPLE_FAIL_ON_START": "1"})
    assert run.returncode == 1, run.output()
    report = run.report()
    assert report["status"] == "failed"
    failed = [cell for cell in report["cells"] if cell["status"] not in ("passed", "skipped")]
    assert [cell["id"] for cell in failed] in (["compose-up"], ["wait-healthy"]), failed
    if failed[0]["id"] == "wait-healthy":
        assert failed[0]["attempts"] == 7  # retries=6
    cells = run.cells()
    for cid in FAILURE_CELLS:
        assert cells[cid]["status"] == "passed", (cid, run.output())
    for cid in ("smoke-front", "smoke-auth"):
        assert cells[cid]["status"] == "skipped", cid
    transcript = run.transcript()
    ps = [line for line in transcript.splitlines() if " failure-ps | " in line]
    assert any("backend" in line for line in ps), ps
    logs = [line for line in transcript.splitlines() if " failure-logs | " in line]
    assert any("refusing to start: SAMPLE_FAIL_ON_START is set" in line for line in logs), logs[-20:]

    record = _last_record(r)
    assert record.status == "failed" and record.deployed is None
    assert record.variables["TAG"] == c and record.variables["TAG_PREV"] == prev
    assert record.meta["failed_step"] == failed[0]["id"]
    body = record.body
    assert "## Minimum Failure Record" in body
    assert f"- 실패 단계: {failed[0]['id']} ({RUNBOOK}:" in body
    assert "- 첫 에러: " in body and "- 전체 로그: " in body
    assert f"- 롤백 가능: 예 (images of TAG_PREV={prev} exist)" in body
    assert "줄(마스킹됨):" in body
    # A failed deploy changes nothing: the one in service stays the one to roll back to.
    assert release_log.last_successful(r.release_log) == prev


def test_5_no_secret_value_in_any_artifact(r: Rehearsal) -> None:
    """Every generated value, in every printed form, is absent from every artifact and captured output."""
    values = parse_env_file(r.env_file)
    redactor = Redactor([Secret(k, v) for k, v in values.items()])
    # The scanner sees what it must (so an empty result below means something).
    assert redactor.leaks(f"x {values['JWT_SECRET_KEY']} y".encode()) == ["JWT_SECRET_KEY"]
    assert r.runs, "no run happened"
    leaks: dict[str, list[str]] = {}
    scanned = 0
    for path in sorted(p for p in r.root.rglob("*") if p.is_file() and p != r.env_file):
        scanned += 1
        if found := redactor.leaks(path.read_bytes()):
            leaks[str(path)] = found
    kinds = {p.name for p in r.root.rglob("*") if p.is_file()}
    assert {"transcript.log", "report.json", "junit.xml", "release.log"} <= kinds, kinds
    for run in r.runs:
        for stream, data in (("stdout", run.stdout), ("stderr", run.stderr)):
            scanned += 1
            if found := redactor.leaks(data):
                leaks[f"{' '.join(run.args[:3])} {stream}"] = found
        # A leak the streaming masker missed would be redacted by the final rescan and named here.
        assert b"secret leak caught by the final rescan" not in run.stderr, run.output()
    assert not leaks, leaks
    assert scanned >= 20


def test_6_site_publishes_the_rehearsal(r: Rehearsal, tmp_path: Path) -> None:
    """The site built from the passed rehearsals' reports and this release.log, as CI publishes it after the
    rehearsal: rehearsal cells passed (``when=failure`` skipped), every other exec cell unverified, every
    record on the history page, no secret in any page."""
    reports = [
        run.folder / "report.json"
        for run in r.runs
        if run.folder is not None and run.folder.name.startswith("rehearsal-") and run.returncode == 0
    ]
    assert reports, "no passed rehearsal to publish (step 1 failed?)"
    check_rehearsal_site(tmp_path, reports, r.release_log, parse_env_file(r.env_file))
