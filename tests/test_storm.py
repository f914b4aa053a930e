"""The incident storm of bench/storm.py at a tiny scale, so its machinery (two gunicorns, two
RQ workers, the fake Twilio, the open-loop callers, the declaration mid-storm and every
check) cannot rot between the full runs that bench/run --storm does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 90.0  # it takes ~17 s; the limit only stops a hung run


@pytest.mark.slow
def test_storm_at_a_tiny_scale_passes_every_check(tmp_path: Path) -> None:
    out = tmp_path / "storm.json"
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "IVR_BENCH_REDIS_CHECKED", "IVR_QUEUE_REDIS_URL")}
    # 21 calls in ~4 s; with seed 7 four affected customers call after the declaration
    argv = [sys.executable, "-m", "bench.storm", "--cps", "5", "--minutes", "0.07",
            "--customers", "300", "--hold", "0.5", "1.5", "--escalation-hold", "3",
            "--drain", "20", "--seed", "7", "--no-write", "--json", str(out)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the storm did not finish in {LIMIT:g} s:\n{output[-3000:]}")
    assert proc.returncode == 0, output[-3000:]
    result = json.loads(out.read_text())
    failed = [c for c in result["checks"] if not c["ok"]]
    assert failed == [], output[-3000:]
    figures = result["figures"]
    assert figures["calls_started"] == figures["calls_answered"] == 21
    assert figures["webhook_errors"] == figures["degraded"] == 0
    assert figures["escalations_asked"] == figures["sv_dial_outs_first"] == 2
    assert figures["affected_tagged"] >= 1  # which ones is the check's business
    assert figures["sms_expected"] == figures["sms_sent"] > 0
    assert set(figures["latency_ms"]) >= {"/voice/incoming", "/voice/gather",
                                          "/voice/queue-wait", "/voice/status"}
    assert len(figures["by_web_process"]) == 2  # both web processes answered
