"""Gunicorn settings for `web:` in the Procfile and for scripts/dev; the bind comes from them.

Logging goes through ivr.logs (JSON lines, phone numbers and tokens masked); gunicorn's own
loggers are routed there too. The access log stays off: the app logs what matters, with ids.
"""

from __future__ import annotations

import os

from ivr import logs

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 15  # Twilio gives a webhook 15 s; a request still running then is already lost
graceful_timeout = 10
keepalive = 5
accesslog = None
loglevel = os.environ.get("IVR_LOG_LEVEL", "INFO").lower()
logconfig_dict = logs.dict_config(loglevel)
# Any logconfig_dict switches gunicorn's access log on; this keeps it off.
logconfig_dict["loggers"]["gunicorn.access"] = {
    "level": "CRITICAL",
    "handlers": [],
    "propagate": False,
}
# gunicorn >= 23 opens ~/.gunicorn/gunicorn.ctl, shared by every instance of the same user;
# nothing here uses it (older versions ignore the setting).
control_socket_disable = True
