"""Requests no Twilio sends and pages no view renders: refused quietly, with the headers
every HTML page carries.

- An absolute-form request line (`POST http://x/voice/incoming HTTP/1.1`, RFC 9112 §3.2.2)
  with a forged signature is a 403 with one warning line, never TwiML or a traceback; sent
  over a raw socket to a real server, and through the WSGI environ gunicorn builds.
- Werkzeug's own error pages (403, 404, 405 under the webhooks) carry the opt-out page's
  security headers.
- /metrics answers only the configured bearer token when IVR_METRICS_TOKEN is set.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from werkzeug.serving import make_server

from ivr import create_app
from ivr.errors import HTML_SECURITY_HEADERS
from tests.conftest import PUBLIC_BASE_URL, sign

FORM = {"CallSid": "CA" + "1" * 32, "From": "+819012345678", "To": "+815012345678"}


class _Late:
    """The WSGI app, built once the server knows its port (PUBLIC_BASE_URL names it)."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


@pytest.fixture
def served(config: dict[str, Any], svc: Any) -> Iterator[tuple[str, int]]:
    """The app on a real port, PUBLIC_BASE_URL http://127.0.0.1:<port> as scripts/dev sets
    it (with a port: the library's URL parsing is what raised on the absolute form)."""
    late = _Late()
    server = make_server("127.0.0.1", 0, late, threaded=True)
    late.app = create_app({**config, "PUBLIC_BASE_URL": f"http://127.0.0.1:{server.server_port}"},
                          services=svc)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_port
    server.shutdown()
    server.server_close()
    thread.join(5)


def raw_post(address: tuple[str, int], target: str, signature: str) -> bytes:
    body = urlencode(FORM).encode()
    head = (f"POST {target} HTTP/1.1\r\nHost: x\r\nX-Twilio-Signature: {signature}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(head + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("target", ["http://x/voice/incoming", "http://127.0.0.1/voice/incoming",
                                    f"{PUBLIC_BASE_URL}/voice/incoming"])
@pytest.mark.parametrize("signed", [False, True])
def test_an_absolute_form_request_line_is_refused_quietly(
        served: tuple[str, int], caplog: pytest.LogCaptureFixture, target: str,
        signed: bool) -> None:
    # Signed over the very URL in the request line, or forged: Twilio sends neither.
    signature = sign(target, FORM) if signed else "forged"
    with caplog.at_level(logging.INFO):
        answer = raw_post(served, target, signature)

    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"403", answer[:400]
    assert b"<Response>" not in answer
    assert [r.levelname for r in caplog.records if r.name.startswith("ivr")] == ["WARNING"]
    assert not any(r.exc_info for r in caplog.records)


def test_the_environ_gunicorn_builds_for_it_is_refused(
        config: dict[str, Any], svc: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = create_app({**config, "PUBLIC_BASE_URL": "http://127.0.0.1:5000"},
                        services=svc).test_client()
    with caplog.at_level(logging.INFO):
        response = client.post(
            "/voice/incoming", data=FORM, headers={"X-Twilio-Signature": "forged"},
            environ_overrides={"RAW_URI": "http://x/voice/incoming"})
    assert response.status_code == 403
    assert not any(r.exc_info for r in caplog.records)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "ivr.signature"]
    assert line == f"rejected unsigned request path=/voice/incoming call_sid={FORM['CallSid']}"


def test_a_form_value_that_is_no_sid_is_not_logged_as_one(
        client: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        client.post("/voice/incoming", data={**FORM, "CallSid": "call_sid=CAFAKE job_id=x"},
                    headers={"X-Twilio-Signature": "forged"})
    (line,) = [r.getMessage() for r in caplog.records if r.name == "ivr.signature"]
    assert line == "rejected unsigned request path=/voice/incoming call_sid=-"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("post", "/voice/incoming", 403),   # unsigned
    ("get", "/voice/incoming", 405),
    ("post", "/voice/no-such-thing", 404),
    ("post", "/sms/incoming", 403),
])
def test_werkzeug_error_pages_carry_the_security_headers(
        client: Any, method: str, path: str, status: int) -> None:
    response = getattr(client, method)(path, data=FORM)
    assert response.status_code == status
    assert response.mimetype == "text/html"
    for name, value in HTML_SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name


def test_json_answers_are_left_as_they_are(client: Any) -> None:
    response = client.get("/api/incidents")
    assert response.status_code == 401 and response.mimetype == "application/json"
    assert "Content-Security-Policy" not in response.headers


def test_metrics_are_open_without_a_token_setting(client: Any) -> None:
    assert client.get("/metrics").status_code == 200


def test_metrics_answer_only_the_configured_token(config: dict[str, Any], svc: Any) -> None:
    client = create_app({**config, "IVR_METRICS_TOKEN": "scrape-token-0123"},
                        services=svc).test_client()

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic scrape-token-0123"}
                      ).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123"})
    assert answer.status_code == 200
    assert b"ivr_redis_up" in answer.data
