"""The README is part of the product: its two commands stay true, and so does the Redis key
table it links to (docs/redis-keys.md)."""

from __future__ import annotations

import inspect
from pathlib import Path

from ivr import keys

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
KEY_TABLE = ROOT / "docs" / "redis-keys.md"


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    head = README.split("\n## ", 1)[0]
    assert "scripts/dev" in head
    assert "scripts/test" in head
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "exec scripts/test" in ci


def test_every_redis_key_is_in_the_key_table_the_readme_links():
    assert "(docs/redis-keys.md)" in README
    table = KEY_TABLE.read_text(encoding="utf-8")
    for fn in keys.ALL:
        params = inspect.signature(fn).parameters
        pattern = fn(**{name: f"<{name}>" for name in params})
        assert f"| `{pattern}` |" in table, f"{fn.__name__}: add {pattern} to {KEY_TABLE.name}"


def test_the_readme_stays_a_five_minute_read():
    """About 200 lines (issue 12 §5): details go to docs/, bench/RESULTS.md, docstrings."""
    assert len(README.splitlines()) <= 250
    assert "## Architecture" in README


def test_workers_take_voice_jobs_before_sms_everywhere_they_are_started():
    """An SV dial-out must not queue behind a fan-out: every worker command lists `default`
    (voice jobs) before `sms`."""
    procfile = (ROOT / "Procfile").read_text(encoding="utf-8")
    dev = (ROOT / "scripts" / "dev").read_text(encoding="utf-8")
    worker = next(line for line in procfile.splitlines() if line.startswith("worker:"))
    assert worker.endswith(" default sms")
    assert "\nQUEUES=(default sms)\n" in dev  # the worker's queues; the banner prints them
    assert '--pid "$RUN/worker.pid" "${QUEUES[@]}" &' in dev
    commands = [line for line in README.splitlines() if "rq worker" in line]
    assert commands and all("default sms" in line for line in commands), commands
