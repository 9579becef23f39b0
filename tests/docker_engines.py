"""Extra Docker Engines and an sshd on this machine, for the multi-target e2e tests (root only).

Each engine is a dockerd of its own: its own socket (``-H unix://…``), ``--data-root``, ``--exec-root``,
``--pidfile`` and ``--config-file``, started in a network namespace (``ip netns``) and a UTS namespace (its own
host name, which ``docker info`` reports). In its network namespace it has its own ``docker0``, iptables rules
and published ports, so it cannot disturb the main engine: a second dockerd in the *same* namespace flushes
the first one's DOCKER chains when it starts, under every other test using the main engine. Each engine still
gets address ranges nothing else uses (its bridge ``--bip``, its ``--default-address-pool`` and its veth pair),
so no route overlaps on this machine either. This machine reaches an engine's published ports at the engine's
address (its end of the veth pair); the engine reaches out through NAT on this machine (two iptables rules per
engine, as the main engine has), because its builds run ``pip install``.

The sshd listens on 127.0.0.1 with a generated host key and takes one generated client key for root. Its
sessions get ``DOCKER_HOST`` pointing at one engine, so ``ssh://root@127.0.0.1:PORT`` reaches that engine the
way ``ssh://deploy@server`` reaches a remote server's. The ssh client (run by the docker CLI) trusts the host
key through a drop-in under /etc/ssh/ssh_config.d/ that matches only that port; ~/.ssh is not touched.

Everything is undone on exit, also after a failure: engines stopped (their containers die with them),
leftover processes of their namespaces killed, mounts, namespaces, veth pairs, iptables rules and files removed.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_DROP_IN_DIR = Path("/etc/ssh/ssh_config.d")
TOOLS = ("dockerd", "docker", "ip", "iptables", "unshare", "nsenter", "ssh", "ssh-keygen", "umount")


def problem() -> str | None:
    """Why extra engines cannot be started here, or None."""
    if os.geteuid() != 0:
        return "extra Docker Engines need root (dockerd, network namespaces, sshd)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not Path(SSHD).is_file():
        missing.append(SSHD)
    if missing:
        return f"missing for extra Docker Engines: {', '.join(missing)} (see .ci/run's apt-get line)"
    if not SSH_DROP_IN_DIR.is_dir():
        return f"{SSH_DROP_IN_DIR} does not exist (the ssh client's drop-in directory)"
    return None


def _run(*cmd: str, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()[-800:]}")
    return done.stdout


def _docker_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would point the docker CLI elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG")}
    env.update(extra)
    return env


@dataclass(frozen=True)
class Engine:
    """One extra engine, running."""

    name: str
    hostname: str  # what ``docker info --format '{{.Name}}'`` answers
    socket: Path
    context: str  # a Docker context for it, in the fleet's DOCKER_CONFIG
    address: str  # where this machine reaches its published ports
    pid: int

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this engine."""
        return subprocess.run(
            ["docker", "-H", self.url, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=_docker_env(),
        )


@dataclass(frozen=True)
class Fleet:
    """The running extra engines and where their contexts live."""

    engines: dict[str, Engine]
    docker_config: Path  # DOCKER_CONFIG holding one context per engine
    root: Path  # scratch space under /var/tmp (short paths: unix sockets are limited to 107 bytes)
    token: str
    load_seconds: float


def _free_octet() -> int:
    """A second octet X such that nothing on this machine routes or holds an address in 10.X.0.0/16."""
    used = _run("ip", "-4", "route", "show", "table", "all") + _run("ip", "-4", "addr")
    choices = list(range(200, 250))
    random.shuffle(choices)
    for octet in choices:
        if f"10.{octet}." not in used:
            return octet
    raise RuntimeError("no free 10.X.0.0/16 range for the extra engines")


def _mounts_under(path: Path) -> list[str]:
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point == str(path) or point.startswith(f"{path}/"):
                found.append(point)
    return found


def _stop_engine(proc: subprocess.Popen[bytes], netns: str, folder: Path) -> None:
    """dockerd stops its containers on SIGTERM; whatever is still alive in its namespace is then killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = [int(p) for p in _run("ip", "netns", "pids", netns, check=False).split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    for point in reversed(_mounts_under(folder)):
        _run("umount", "-l", point, check=False)


@contextlib.contextmanager
def engines(names: Sequence[str], images: Sequence[str]) -> Iterator[Fleet]:
    """Start one engine per name, load ``images`` from the main engine into each, make a context for each."""
    token = secrets.token_hex(3)
    root = Path(tempfile.mkdtemp(prefix=f"rbx-{token}-", dir="/var/tmp"))
    config = root / "docker-config"
    config.mkdir()
    with contextlib.ExitStack() as undo:
        undo.callback(shutil.rmtree, root, ignore_errors=True)
        octet = _free_octet()
        started: dict[str, Engine] = {}
        for number, name in enumerate(names, 1):
            started[name] = _start(undo, root, token, octet, number, name)
        t0 = time.monotonic()
        _load(images, list(started.values()))
        load_seconds = time.monotonic() - t0
        for engine in started.values():
            _run(
                "docker", "context", "create", engine.context, "--docker", f"host={engine.url}",
                env=_docker_env(DOCKER_CONFIG=str(config)),
            )  # fmt: skip
        yield Fleet(started, config, root, token, load_seconds)


def _start(undo: contextlib.ExitStack, root: Path, token: str, octet: int, number: int, name: str) -> Engine:
    folder = root / name
    folder.mkdir()
    netns, host_if, ns_if = f"rbx{token}{number}", f"rbx{token}{number}h", f"rbx{token}{number}n"
    net = f"10.{octet}.{number}"
    _run("ip", "netns", "add", netns)
    undo.callback(_run, "ip", "netns", "del", netns, check=False)
    _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
    undo.callback(_run, "ip", "link", "del", host_if, check=False)
    _run("ip", "link", "set", ns_if, "netns", netns)
    _run("ip", "addr", "add", f"{net}.1/30", "dev", host_if)
    _run("ip", "link", "set", host_if, "up")
    inside = ("ip", "netns", "exec", netns)
    _run(*inside, "ip", "addr", "add", f"{net}.2/30", "dev", ns_if)
    _run(*inside, "ip", "link", "set", ns_if, "up")
    _run(*inside, "ip", "link", "set", "lo", "up")
    _run(*inside, "ip", "route", "add", "default", "via", f"{net}.1")
    # Outbound for the engine's builds: forward its traffic (the main engine sets FORWARD's policy to DROP)
    # and masquerade it, as the main engine does for its own bridge.
    rules = (
        ("filter", "FORWARD", "-i", host_if, "-j", "ACCEPT"),
        ("filter", "FORWARD", "-o", host_if, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
        ("nat", "POSTROUTING", "-s", f"{net}.0/30", "!", "-o", host_if, "-j", "MASQUERADE"),
    )
    for table, chain, *spec in rules:
        _run("iptables", "-w", "-t", table, "-I", chain, "1", *spec)
        undo.callback(_run, "iptables", "-w", "-t", table, "-D", chain, *spec, check=False)

    hostname = f"rbx-{token}-{name}"
    sock = folder / "docker.sock"
    (folder / "daemon.json").write_text("{}\n", encoding="utf-8")
    dockerd = [
        "dockerd",
        "-H", f"unix://{sock}",
        "--data-root", str(folder / "data"),
        "--exec-root", str(folder / "exec"),
        "--pidfile", str(folder / "docker.pid"),
        "--config-file", str(folder / "daemon.json"),  # never the machine's /etc/docker/daemon.json
        "--bip", f"10.{octet}.{10 + number}.1/24",
        "--default-address-pool", f"base=10.{octet}.{32 * number}.0/19,size=24",
        "--shutdown-timeout", "5",
    ]  # fmt: skip
    log = open(folder / "dockerd.log", "wb")  # noqa: SIM115 - closed by the undo stack
    undo.callback(log.close)
    # unshare (UTS) -> sh sets the host name -> nsenter (network) -> dockerd: each execs the next, one pid.
    script = 'hostname "$1" && shift && exec nsenter --net="$0" -- "$@"'
    proc = subprocess.Popen(
        ["unshare", "--uts", "--", "sh", "-c", script, f"/run/netns/{netns}", hostname, *dockerd],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C meant for pytest must reach the teardown, not the daemon
    )
    undo.callback(_stop_engine, proc, netns, folder)
    engine = Engine(name, hostname, sock, f"rbx-{token}-{name}", f"{net}.2", proc.pid)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dockerd for engine {name} exited: {(folder / 'dockerd.log').read_text()[-1500:]}")
        answer = engine.docker("info", "--format", "{{.Name}}", timeout=30)
        if answer.returncode == 0 and answer.stdout.strip() == hostname:
            return engine
        time.sleep(0.3)
    raise RuntimeError(f"dockerd for engine {name} did not answer within 90 s")


def _load(images: Sequence[str], targets: Sequence[Engine]) -> None:
    """``docker save`` once from the main engine, streamed into ``docker load`` of every extra engine at once."""
    save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    loads = [
        subprocess.Popen(
            ["docker", "-H", e.url, "load", "-q"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_docker_env(),
        )
        for e in targets
    ]
    assert save.stdout is not None
    try:
        while chunk := save.stdout.read(1 << 20):
            for load in loads:
                assert load.stdin is not None
                load.stdin.write(chunk)
    finally:
        for load in loads:
            assert load.stdin is not None
            load.stdin.close()
    problems = []
    if save.wait(timeout=600) != 0:
        problems.append(f"docker save: {save.stderr.read().decode(errors='replace') if save.stderr else ''}")
    for engine, load in zip(targets, loads, strict=True):
        # stdin is closed already (communicate() would flush it); -q keeps the other pipes near empty.
        if load.wait(timeout=600) != 0:
            err = load.stderr.read() if load.stderr else b""
            problems.append(f"docker load into {engine.name}: {err.decode(errors='replace')}")
    if problems:
        raise RuntimeError("; ".join(problems))


# -- sshd -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sshd:
    """A running sshd whose sessions talk to one engine."""

    port: int
    log: Path

    @property
    def docker_host(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def sshd(engine: Engine, folder: Path, token: str) -> Iterator[Sshd]:
    """An sshd on 127.0.0.1:PORT whose sessions run docker against ``engine``; the client trusts its key."""
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "client_key"):
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"runbook-exec e2e {token}", "-f", str(folder / key))
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text(), encoding="utf-8")
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
        f"PidFile {folder / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"  # the keys live in a scratch folder, not in a home directory
        f"SetEnv DOCKER_HOST={engine.url}\n",
        encoding="utf-8",
    )
    host_key = (folder / "host_key.pub").read_text().split()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n", encoding="utf-8")
    drop_in = SSH_DROP_IN_DIR / f"rbx-{token}.conf"
    log = folder / "sshd.log"
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    _run(SSHD, "-t", "-f", str(config))
    with contextlib.ExitStack() as undo:
        drop_in.write_text(
            # Only this port on 127.0.0.1 as root: no other ssh connection of this machine is affected.
            f'Match host 127.0.0.1 user root exec "test %p = {port}"\n'
            f"  IdentityFile {folder / 'client_key'}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {folder / 'known_hosts'}\n"
            "  StrictHostKeyChecking yes\n"
            "  BatchMode yes\n",
            encoding="utf-8",
        )
        undo.callback(drop_in.unlink, missing_ok=True)
        out = open(log, "wb")  # noqa: SIM115 - closed by the undo stack
        undo.callback(out.close)
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        undo.callback(_stop, proc)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {log.read_text(errors='replace')[-1000:]}")
            time.sleep(0.1)
        yield Sshd(port, log)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
