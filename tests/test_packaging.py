"""`pip install .` as a deploy builds it: a wheel, installed into a fresh virtualenv, serves
the app from a directory that is not the checkout.

The wheel must hold every subpackage (ivr/api/, ivr/dev/, and any added later), the
templates, the Lua scripts and the flows/ and prompts/ the app loads at start, found
relative to the installed package. The wheel is built from a copy of the files git would
commit, so nothing left over in the checkout (build/, *.egg-info) can hide a gap. The fresh
venv borrows the third-party libraries of the venv running pytest (a .pth line), so the
test needs no network beyond building; the project itself comes only from the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import AUTH_TOKEN, free_port, sign
from tests.test_commands import copy_checkout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
START_LIMIT = 60.0


def build_wheel(tmp: Path) -> Path:
    source = tmp / "source"
    copy_checkout(source)
    out = tmp / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("incident_ivr-*.whl")
    return wheel


def shipped_in_checkout() -> set[str]:
    """What the wheel must hold, as paths inside it: every Python file and data file of the
    packages, and flows/ + prompts/ under ivr/defaults/."""
    wanted = set()
    for top in ("ivr", "worker"):
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                wanted.add(path.relative_to(ROOT).as_posix())
    for data, pattern in (("flows", "*.yaml"), ("prompts", "*/*.j2")):
        for path in (ROOT / data).glob(pattern):
            wanted.add(f"ivr/defaults/{path.relative_to(ROOT).as_posix()}")
    return wanted


def fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--prefix", str(venv), str(wheel)], check=True, timeout=300)
    site = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip())
    # The libraries only; pytest's venv holds the project as an editable finder, which a .pth
    # line does not activate (only site-packages' own .pth files run).
    (site / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def post(url: str, form: dict[str, str], signature: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=urlencode(form).encode(), method="POST",
                                     headers={"X-Twilio-Signature": signature})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_wheel_ships_everything_and_serves_from_elsewhere(
        tmp_path: Path, redis_server: Any, queue_redis_server: Any) -> None:
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(shipped_in_checkout() - names)
    assert missing == [], f"not in the wheel: {missing}"

    venv = fresh_venv(tmp_path, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import ivr, ivr.config as c; print(ivr.__file__); print(c.IVR_FLOWS_DIR)"],
        cwd=elsewhere, check=True, capture_output=True, text=True).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IVR_", "TWILIO_", "PUBLIC_", "REDIS_"))}
    env.update(REDIS_URL=redis_server.url, IVR_QUEUE_REDIS_URL=queue_redis_server.url,
               TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
               TWILIO_API_BASE_URL="console", PUBLIC_BASE_URL=base,
               IVR_ADMIN_TOKEN="packaging-test-admin-token")
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        web = subprocess.Popen(
            [str(venv / "bin" / "python"), "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "ivr:create_app()"],
            cwd=elsewhere, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_LIMIT
        while True:
            assert web.poll() is None, log.read_text(errors="replace")
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)

        form = {"CallSid": "CA" + "7" * 32, "From": "+819012345678", "To": "+815012345678",
                "CallStatus": "ringing"}
        status, body = post(base + "/voice/incoming", form,
                            sign(base + "/voice/incoming", form))
        assert status == 200, body
        said = " ".join(say.text or "" for say in ET.fromstring(body).iter("Say"))
        assert "ご用件" in said, body  # the menu, from the packaged flows/ and prompts/
        assert post(base + "/voice/incoming", form, "forged")[0] == 403
    finally:
        web.terminate()
        web.wait(15)
