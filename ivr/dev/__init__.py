"""Tools for running the service on one machine, never imported by the web app's views.

`ivr.dev.rest` stands in for Twilio's REST API when scripts/dev makes up credentials
(TWILIO_API_BASE_URL=console); `ivr.dev.phone` drives a running instance as Twilio would,
for `ivr call` / `ivr sms` and bench/storm.
"""
