"""The WSGI app the webhook benchmark serves: the real app plus two baselines beside it.

    gunicorn -c gunicorn.conf.py --pythonpath bench "bench_app:create_app()"

Both baselines are views of the real app (same ProxyFix, error handlers and gunicorn
settings), so the ratios measure the caller logic of /voice/incoming and nothing else:

- POST /bench/static   fixed TwiML; no signature check, no Redis: the framework's floor.
- POST /bench/minimal  what any realistic incoming-call view must do: the signature check
                       (ivr.signature.twilio_signed, the same URL scheme), one pipelined
                       Redis round trip of two commands (the caller's customer hash and the
                       active incidents), and a VoiceResponse with one <Say> and <Enqueue>.
"""

from __future__ import annotations

import json

from flask import Blueprint, Flask, Response, request
from twilio.twiml.voice_response import VoiceResponse

from ivr import create_app as create_ivr_app
from ivr import current_services, keys
from ivr.signature import twilio_signed
from ivr.twiml import twiml
from ivr.voice.twiml import callback_url

bp = Blueprint("bench", __name__, url_prefix="/bench")

_static = VoiceResponse()
_static.say("お電話ありがとうございます。サポート窓口でございます。", voice="Polly.Mizuki",
            language="ja-JP")
_static.enqueue("support", wait_url="https://ivr.bench.invalid/voice/queue-wait",
                wait_url_method="POST")
STATIC_TWIML = str(_static).encode()


@bp.post("/static")
def static() -> Response:
    """A fixed TwiML answer."""
    return Response(STATIC_TWIML, mimetype="text/xml")


@bp.post("/minimal")
@twilio_signed
def minimal() -> Response:
    """Signature check, one pipeline of two reads, one <Say> and an <Enqueue>."""
    svc = current_services()
    pipe = svc.redis.pipeline(transaction=False)
    pipe.hgetall(keys.customer(request.form.get("From") or "unknown"))
    pipe.hgetall(keys.incidents_active())
    customer, active = pipe.execute()
    lang = customer.get("language") or "ja"
    texts = [json.loads(doc)["announcement"].get(lang, "") for doc in active.values()]
    vr = VoiceResponse()
    vr.say("お電話ありがとうございます。" + "".join(texts), voice="Polly.Mizuki",
           language="ja-JP" if lang == "ja" else "en-US")
    vr.enqueue("support", wait_url=callback_url("voice.queue_wait"), wait_url_method="POST")
    return twiml(vr)


def create_app() -> Flask:
    """The production app factory (settings from the environment) with the baselines."""
    app = create_ivr_app()
    app.register_blueprint(bp)
    return app
