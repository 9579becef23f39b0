"""``--target`` end to end: ops/deploy.md rolled out to two extra Docker Engines on this machine, one of them
reached over ssh, with the real CLI, the real docker CLI and Compose, real engines and a real sshd.

Setup (tests/docker_engines.py): engines ``a`` and ``b`` in their own network namespaces, the local base
images loaded into both, a Docker context for each, and an sshd whose sessions talk to engine b. The runbook
is ops/deploy.md with a ``runbook.targets`` block added to its front matter:

- ``a``: the context of engine a;
- ``b``: ``docker_host: ssh://root@127.0.0.1:PORT`` (engine b through sshd), with an env file of its own;
- ``c``: the context of engine a again (only ever "not run").

Each target has its own HTTP_PORT and SMOKE_HOST (the engine's address). One stack per engine, shared by the
steps, in order:

1. rehearsal ``--target a --target b`` (TAG T1): both stacks healthy, each engine holds its own images and
   containers (the main engine none of them), two passed records naming their target and engine host;
2. drill with b's failure switch on (TAG T2, targets a, b, c): a deployed and recorded, b failed with its
   Minimum Failure Record (its rollback check looked at b's images, through ssh), c "not run", exit 1;
3. a fixed deploy of b alone (TAG T3);
4. rollback ``--target b`` of T3: TAG_PREV is T1 (b's last good one), not T2 (a's): b runs T1 again;
5. no generated secret in any artifact or output.

Engines, sshd and their files are removed even when a step fails. Step times are printed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
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

import docker_engines
from compose_env import COMPOSE_FILE, ROOT, clean_environ

pytestmark = pytest.mark.e2e

DEPLOY = ROOT / "ops" / "deploy.md"
IMAGES = {"db": "db", "backend": "backend", "nginx": "frontend"}  # service -> image repository
RUN_TIMEOUT = 1500  # generous no-hang bound per CLI run (two cold builds included)


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    summary: dict[str, Any]

    def output(self) -> str:
        return self.stdout[-5000:] + "\n--- stderr ---\n" + self.stderr[-3000:]

    def target(self, name: str) -> dict[str, Any]:
        [row] = [t for t in self.summary["targets"] if t["name"] == name]
        return row


@dataclass
class Rollout:
    """Shared state of the steps."""

    fleet: docker_engines.Fleet
    sshd: docker_engines.Sshd
    work: Path
    env: dict[str, str]
    ports: dict[str, int]
    tags: dict[str, str]
    env_files: dict[str, Path]
    runs: list[Run] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def release_log(self) -> Path:
        return self.work / "release.log"

    def runbook(self, b_fails: bool = False) -> Path:
        """ops/deploy.md with this fleet's targets in its front matter (b's failure switch on or off)."""
        a, b = self.fleet.engines["a"], self.fleet.engines["b"]
        fail = ', SAMPLE_FAIL_ON_START: "1"' if b_fails else ""
        block = (
            "  targets:\n"
            f'    a: {{context: {a.context}, vars: {{HTTP_PORT: "{self.ports["a"]}", SMOKE_HOST: "{a.address}"}}}}\n'
            f'    b: {{docker_host: "{self.sshd.docker_host}", env_file: "{self.env_files["b"]}",'
            f' vars: {{HTTP_PORT: "{self.ports["b"]}", SMOKE_HOST: "{b.address}"{fail}}}}}\n'
            f'    c: {{context: {a.context}, vars: {{HTTP_PORT: "{self.ports["c"]}", SMOKE_HOST: "{a.address}"}}}}\n'
        )
        text = DEPLOY.read_text(encoding="utf-8")
        head, sep, rest = text.partition("\n---\n")
        path = self.work / "deploy-targets.md"
        path.write_text(head + "\n" + block.rstrip("\n") + sep + rest, encoding="utf-8")
        return path

    def cli(self, name: str, *args: str, b_fails: bool = False) -> Run:
        summary_path = self.work / name / "rollout.json"
        full = (
            str(self.runbook(b_fails)),
            *args,
            "--env-file", str(self.env_files["default"]),
            "--release-log", str(self.release_log),
            "--report", str(summary_path),
            "--junit", str(self.work / name / "rollout.xml"),
        )  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "runbook_exec.cli", *full],
            cwd=ROOT,
            env=clean_environ(self.env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
        run = Run(
            full, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"), summary
        )
        self.runs.append(run)
        return run

    def compose(self, engine: str, *args: str, tag: str) -> subprocess.CompletedProcess[str]:
        e = self.fleet.engines[engine]
        env = {**self.env, "DOCKER_HOST": e.url, "TAG": tag, "ENV_FILE": str(self.env_files["default"])}
        env.pop("DOCKER_CONFIG", None)
        return subprocess.run(
            ["docker", "compose", "--env-file", str(self.env_files["default"]), "-f", str(COMPOSE_FILE), *args],
            cwd=ROOT,
            env=clean_environ(env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def services(self, engine: str) -> dict[str, tuple[str, str]]:
        """Per service of this project on ``engine``: (health, image reference)."""
        ps = self.compose(engine, "ps", "--format", "json", tag=self.tags["T1"])
        assert ps.returncode == 0, ps.stderr
        rows = [json.loads(line) for line in ps.stdout.splitlines() if line.strip()]
        return {row["Service"]: (row["Health"], row["Image"]) for row in rows}

    def records(self) -> list[release_log.Record]:
        return release_log.records(self.release_log)


def _tags() -> dict[str, str]:
    tags: set[str] = set()
    while len(tags) < 3:
        tags.add(secrets.token_hex(4)[:7])
    return dict(zip(("T1", "T2", "T3"), sorted(tags), strict=True))


def _init_env(path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runbook_exec.cli", "init-env", "--sample", ".env.sample", "--out", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def rollout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rollout]:
    _need_engine()
    reason = docker_engines.problem()
    if reason is not None:
        if os.environ.get("RUNBOOK_E2E") == "required":
            pytest.fail(f"RUNBOOK_E2E=required but {reason}")
        pytest.skip(reason)
    images = _base_images()
    work = tmp_path_factory.mktemp("targets")
    t0 = time.monotonic()
    with (
        docker_engines.engines(["a", "b"], sorted(set(images.values()))) as fleet,
        docker_engines.sshd(fleet.engines["b"], fleet.root / "ssh", fleet.token) as sshd,
    ):
        env_files = {"default": work / "rehearsal.env", "b": work / "b.env"}
        for path in env_files.values():
            _init_env(path)
        env = {
            "DOCKER_CONFIG": str(fleet.docker_config),
            # A project of its own on each engine; each engine publishes on its own address.
            "COMPOSE_PROJECT_NAME": "runbook-e2e-targets-" + fleet.token,
            **images,
        }
        ports = {name: _free_port() for name in "abc"}
        r = Rollout(fleet, sshd, work, env, ports, _tags(), env_files)
        r.seconds["engines up, images loaded"] = round(time.monotonic() - t0, 1)
        r.seconds["of which image loading"] = round(fleet.load_seconds, 1)
        try:
            yield r
        finally:
            t1 = time.monotonic()
            for summary in (run.summary for run in r.runs):
                for row in summary.get("targets", []):
                    if row.get("run_dir"):
                        shutil.rmtree(ROOT / row["run_dir"], ignore_errors=True)
    r.seconds["teardown"] = round(time.monotonic() - t1, 1)
    print("\ne2e targets times: " + ", ".join(f"{k} {v:.1f}s" for k, v in r.seconds.items()))


@pytest.fixture
def r(rollout: Rollout, request: pytest.FixtureRequest, record_property: Any) -> Iterator[Rollout]:
    t0 = time.monotonic()
    yield rollout
    seconds = round(time.monotonic() - t0, 1)
    rollout.seconds[request.node.name] = seconds
    record_property("seconds", seconds)
    print(f"\ne2e {request.node.name}: {seconds:.1f}s")


def _get(address: str, port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://{address}:{port}{path}", timeout=10) as response:
        status: int = response.status
        return status


def _images(r: Rollout, engine: str) -> set[str]:
    listed = r.fleet.engines[engine].docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert listed.returncode == 0, listed.stderr
    return set(listed.stdout.split())


def test_1_rehearsal_on_two_engines(r: Rollout) -> None:
    t1 = r.tags["T1"]
    run = r.cli("1-rehearsal", "--section", "rehearsal", "--var", f"TAG={t1}", "--target", "a", "--target", "b")
    assert run.returncode == 0, run.output()
    a, b = r.fleet.engines["a"], r.fleet.engines["b"]
    # Each target's live lines carry its name; each smoke test asked its own engine's address.
    assert any(line.startswith("a | ✓ smoke-openapi passed") for line in run.stdout.splitlines()), run.output()
    assert any(line.startswith("b | ✓ smoke-auth passed") for line in run.stdout.splitlines()), run.output()
    for name in ("a", "b"):
        assert r.services(name) == {s: ("healthy", f"{image}:{t1}") for s, image in IMAGES.items()}, name
        assert _get(r.fleet.engines[name].address, r.ports[name], "/api/openapi.json") == 200
        # The images were built on that engine: each holds its own, the main engine none of them.
        assert {f"{image}:{t1}" for image in IMAGES.values()} <= _images(r, name)
    main = subprocess.run(["docker", "image", "inspect", f"backend:{t1}"], capture_output=True, check=False)
    assert main.returncode != 0, "the build happened on the main engine"
    # Engine b was reached over ssh, as root, with the generated key.
    assert "Accepted publickey for root from 127.0.0.1" in r.sshd.log.read_text(errors="replace")

    ra, rb = r.records()
    assert (ra.target, ra.meta["engine_host"], ra.status, ra.deployed) == ("a", a.hostname, "passed", t1)
    assert (rb.target, rb.meta["engine_host"], rb.status, rb.deployed) == ("b", b.hostname, "passed", t1)
    assert f"대상: b (엔진 호스트 {b.hostname})" in rb.body
    assert [t["status"] for t in run.summary["targets"]] == ["passed", "passed"]


def test_2_drill_b_fails_a_is_recorded_c_is_not_run(r: Rollout) -> None:
    t1, t2 = r.tags["T1"], r.tags["T2"]
    args = ("--section", "rehearsal", "--var", f"TAG={t2}", "--target", "a", "--target", "b", "--target", "c")
    run = r.cli("2-drill", *args, b_fails=True)
    assert run.returncode == 1, run.output()
    assert [run.target(n)["status"] for n in "abc"] == ["passed", "failed", "not run"]
    assert run.summary["not_run"] == ["c"] and run.stdout.rstrip().endswith("not run: c")
    assert "== target c" not in run.stdout
    assert r.services("a") == {s: ("healthy", f"{image}:{t2}") for s, image in IMAGES.items()}

    ra, rb = r.records()[-2:]
    assert (ra.target, ra.status, ra.deployed, ra.variables["TAG_PREV"]) == ("a", "passed", t2, t1)
    assert (rb.target, rb.status, rb.deployed, rb.variables["TAG_PREV"]) == ("b", "failed", None, t1)
    assert rb.meta["failed_step"] in ("compose-up", "wait-healthy")
    assert "## Minimum Failure Record" in rb.body
    # The rollback verdict looked for b's previous images on engine b (through ssh), where they are.
    assert f"- 롤백 가능: 예 (images of TAG_PREV={t1} exist)" in rb.body
    logs = [line for line in run.stdout.splitlines() if line.startswith("b | ") and "SAMPLE_FAIL_ON_START" in line]
    assert logs, run.output()


def test_3_fixed_deploy_of_b_alone(r: Rollout) -> None:
    t1, t3 = r.tags["T1"], r.tags["T3"]
    run = r.cli("3-fix-b", "--section", "rehearsal", "--var", f"TAG={t3}", "--target", "b")
    assert run.returncode == 0, run.output()
    assert r.services("b") == {s: ("healthy", f"{image}:{t3}") for s, image in IMAGES.items()}
    record = r.records()[-1]
    assert (record.target, record.deployed, record.variables["TAG_PREV"]) == ("b", t3, t1)


def test_4_rollback_of_b_uses_bs_own_tag_prev(r: Rollout) -> None:
    t1, t2, t3 = r.tags["T1"], r.tags["T2"], r.tags["T3"]
    # a's last good deploy is T2; b never ran T2 successfully. b's TAG_PREV for T3 is T1.
    assert release_log.last_successful(r.release_log, exclude=t3, target="a") == t2
    run = r.cli("4-rollback-b", "--section", "rollback", "--var", f"TAG={t3}", "--target", "b", "--yes")
    assert run.returncode == 0, run.output()
    record = r.records()[-1]
    assert (record.target, record.meta["kind"], record.deployed) == ("b", "rollback", t1)
    assert record.variables["TAG_PREV"] == t1
    assert r.services("b") == {s: ("healthy", f"{image}:{t1}") for s, image in IMAGES.items()}
    # a was not touched.
    assert r.services("a") == {s: ("healthy", f"{image}:{t2}") for s, image in IMAGES.items()}


def test_5_no_secret_value_in_any_artifact(r: Rollout) -> None:
    values = {f"{stem}:{k}": v for stem, path in r.env_files.items() for k, v in parse_env_file(path).items()}
    redactor = Redactor([Secret(k, v) for k, v in values.items()])
    assert r.runs, "no run happened"
    files = [p for p in r.work.rglob("*") if p.is_file() and p.suffix != ".env"]
    for run in r.runs:
        for row in run.summary.get("targets", []):
            if row.get("run_dir"):
                files += [p for p in (ROOT / row["run_dir"]).rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"transcript.log", "report.json", "junit.xml", "release.log", "rollout.json"} <= names, names
    leaks = {str(p): found for p in files if (found := redactor.leaks(p.read_bytes()))}
    for run in r.runs:
        for stream, text in (("stdout", run.stdout), ("stderr", run.stderr)):
            if found := redactor.leaks(text.encode()):
                leaks[f"{run.args[1:4]} {stream}"] = found
        assert "secret leak caught by the final rescan" not in run.stderr, run.output()
    assert not leaks, leaks
