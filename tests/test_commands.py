"""The README's `scripts/dev`, run for real from a copy of this checkout.

It starts its own Redis, gunicorn and an RQ worker with its scheduler, answers /healthz and
/readyz, and takes all of them down on SIGTERM. The copy reuses the virtualenv that runs
pytest (IVR_VENV), so nothing is installed again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from rq import Worker
from rq.scheduler import RQScheduler

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
START_LIMIT = 60.0
STOP_LIMIT = 15.0
# Settings scripts/dev must generate itself; a developer's own values must not leak in.
UNSET = (
    "REDIS_URL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "PUBLIC_BASE_URL",
    "IVR_ADMIN_TOKEN",
    "TWILIO_API_BASE_URL",
    "WEB_CONCURRENCY",
    "PORT",
)


def require_platform() -> Path:
    """The venv to reuse; fail (not skip) when this machine cannot run the command."""
    if not sys.platform.startswith("linux"):
        pytest.fail(f"test_commands needs Linux (/proc), this is {sys.platform}")
    for binary in ("bash", "git", "redis-server"):
        if shutil.which(binary) is None:
            pytest.fail(
                f"{binary} is not on PATH: run the suite with scripts/test, "
                "which installs redis-server"
            )
    venv = Path(sys.prefix)
    for name in ("python", "gunicorn", "rq"):
        if not (venv / "bin" / name).exists():
            pytest.fail(
                f"{venv}/bin/{name} is missing: run the suite with scripts/test, "
                "which installs the project into .venv"
            )
    return venv


def copy_checkout(dest: Path) -> None:
    """Copy the files git would commit now: tracked plus untracked-but-not-ignored."""
    result = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{ROOT} is not a git checkout, so the files to copy are unknown: "
            f"{result.stderr.decode(errors='replace').strip()}"
        )
    listed = result.stdout
    for name in filter(None, listed.split(b"\0")):
        source = ROOT / os.fsdecode(name)
        if not source.is_file():  # deleted in the working tree
            continue
        target = dest / os.fsdecode(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)  # keeps the executable bit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_members(pgid: int) -> list[str]:
    """Live (not zombie) processes of a process group, as 'pid command'."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after the last ')'
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, _ppid, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(f"{entry.name} {comm}")
    return members


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class Dev:
    """scripts/dev of a copied checkout, in a process group of its own."""

    def __init__(self, repo: Path, port: int, venv: Path, cwd: Path) -> None:
        self.repo, self.port = repo, port
        self.output = cwd / "dev.log"
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env.update(PORT=str(port), IVR_VENV=str(venv))
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(repo / "scripts" / "dev")],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.output.read_text(errors="replace")[-4000:]

    def pid_of(self, name: str) -> int:
        return int((self.repo / ".run" / f"{name}.pid").read_text())

    def wait_for(self, what: str, check: Callable[[], bool], deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"scripts/dev exited ({self.proc.returncode}) while waiting for "
                    f"{what}:\n{self.log()}"
                )
            if check():
                return
            time.sleep(0.1)
        pytest.fail(f"{what} not seen within {START_LIMIT:.0f}s:\n{self.log()}")


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    venv = require_platform()
    repo = tmp_path / "repo"
    copy_checkout(repo)
    elsewhere = tmp_path / "elsewhere"  # the command must not depend on the cwd
    elsewhere.mkdir()
    running = Dev(repo, free_port(), venv, elsewhere)
    yield running
    if group_members(running.proc.pid):  # the test failed half-way: leave nothing behind
        os.killpg(running.proc.pid, signal.SIGKILL)
        running.proc.wait(5)


def test_dev_starts_the_whole_service_and_stops_it_on_sigterm(dev: Dev) -> None:
    base = f"http://127.0.0.1:{dev.port}"
    deadline = time.monotonic() + START_LIMIT
    dev.wait_for("GET /healthz 200", lambda: get(base + "/healthz") == 200, deadline)
    assert get(base + "/readyz") == 200, dev.log()
    assert f"console http://127.0.0.1:{dev.port}/console/" in dev.log()

    env_file = (dev.repo / ".run" / "dev.env").read_text()
    assert "IVR_ADMIN_TOKEN=" in env_file and "TWILIO_AUTH_TOKEN=" in env_file
    redis_url = next(
        line.split("=", 1)[1]
        for line in env_file.splitlines()
        if line.startswith("export REDIS_URL=")
    )
    assert redis_url.startswith(("unix://", "redis://127.0.0.1:6390")), redis_url
    connection = redis_lib.Redis.from_url(redis_url)

    def worker_ready() -> bool:
        workers = Worker.all(connection=connection)
        locks = [RQScheduler.get_locking_key(q) for q in ("sms", "default")]
        return (
            any(sorted(w.queue_names()) == ["default", "sms"] for w in workers)
            and connection.exists(*locks) == 2
        )

    dev.wait_for("an RQ worker on sms+default holding the scheduler locks", worker_ready, deadline)
    (worker,) = Worker.all(connection=connection)
    assert worker.pid == dev.pid_of("worker")
    connection.close()
    started = {name: dev.pid_of(name) for name in ("web", "worker", "redis")}
    assert all(str(pid) in " ".join(group_members(dev.proc.pid)) for pid in started.values())

    dev.proc.send_signal(signal.SIGTERM)
    stop_deadline = time.monotonic() + STOP_LIMIT
    try:
        dev.proc.wait(STOP_LIMIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/dev still running {STOP_LIMIT:.0f}s after SIGTERM:\n{dev.log()}")
    while group_members(dev.proc.pid) and time.monotonic() < stop_deadline:
        time.sleep(0.1)
    assert group_members(dev.proc.pid) == [], dev.log()
    assert dev.proc.returncode == 0, dev.log()
    assert (dev.repo / ".run" / "dev.rdb").exists()  # its Redis saved on the way out


def test_dev_restarts_a_dead_redis_with_its_data_and_keeps_the_web(dev: Dev) -> None:
    base = f"http://127.0.0.1:{dev.port}"
    deadline = time.monotonic() + START_LIMIT
    dev.wait_for("GET /readyz 200", lambda: get(base + "/readyz") == 200, deadline)
    banner = dev.log()
    assert "queues default, sms" in banner, banner  # the order the worker is started with
    env_file = (dev.repo / ".run" / "dev.env").read_text()
    redis_url = next(line.split("=", 1)[1] for line in env_file.splitlines()
                     if line.startswith("export REDIS_URL="))
    connection = redis_lib.Redis.from_url(redis_url, socket_timeout=2)
    assert connection.config_get("appendonly") == {"appendonly": "yes"}
    connection.set("dev-test:written-before-the-crash", "1")
    connection.close()
    first, web = dev.pid_of("redis"), dev.pid_of("web")

    os.kill(first, signal.SIGKILL)

    def back() -> bool:
        try:
            return dev.pid_of("redis") != first and get(base + "/readyz") == 200
        except (OSError, ValueError):
            return False

    dev.wait_for("a restarted redis answering /readyz", back, time.monotonic() + START_LIMIT)
    said = [line for line in dev.output.read_text(errors="replace").splitlines()
            if line.startswith("dev: ")]
    assert "dev: redis exited; restarting it (the web keeps answering callers meanwhile)" \
        in said, said
    assert dev.pid_of("web") == web  # the web was never stopped
    connection = redis_lib.Redis.from_url(redis_url, socket_timeout=2)
    assert connection.get("dev-test:written-before-the-crash") == b"1"
    connection.close()
