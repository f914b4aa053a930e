"""Tests of the RQ side: jobs, retries, and real `rq worker` processes.

The helpers here drive a real worker process: wait for a condition with a bound, find a
process's children, start and kill `rq worker -w worker.Worker --with-scheduler`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 25.0  # seconds any one wait may take


def until(what: str, check: Callable[[], bool], *, limit: float = LIMIT,
          alive: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"the rq worker exited ({alive.returncode}) while waiting for {what}:\n"
                        + (log.read_text(errors="replace")[-4000:] if log else ""))
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {limit:.0f}s:\n"
                        + (log.read_text(errors="replace")[-4000:] if log else ""))
        time.sleep(0.005)


def descendants(pid: int) -> list[int]:
    """`pid` and every process under it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


class RqWorker:
    """`rq worker -w worker.Worker --with-scheduler default sms` in a process group of its own.

    RQ puts each work horse in a process group of its own (os.setpgrp), so killing the worker
    the way a lost machine would means killing every group under it.
    """

    def __init__(self, env: dict[str, str], url: str, log: Path) -> None:
        self.log = log
        rq = Path(sys.prefix) / "bin" / "rq"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(rq), "worker", "-w", "worker.Worker", "--with-scheduler", "--url", url,
                 "default", "sms"],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

    def send(self, signum: int) -> None:
        groups = set()
        for pid in descendants(self.proc.pid) if signum == signal.SIGKILL else [self.proc.pid]:
            try:
                groups.add(os.getpgid(pid))
            except ProcessLookupError:
                pass
        for group in groups:
            try:
                os.killpg(group, signum)
            except ProcessLookupError:
                pass

    def stop(self, signum: int = signal.SIGKILL) -> None:
        self.send(signum)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.proc.wait(5)
