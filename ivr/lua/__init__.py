"""Every Redis script of the service, one `<name>.lua` file each, shipped as package data.

Each file opens with its contract (KEYS, ARGV, what it returns) and is run whole as it
stands, so `redis-cli --eval ivr/lua/<name>.lua key … , arg …` runs what the service runs.
Settings come in as ARGV, never written into the source: one script, one SHA, whatever the
deployment's flows say. Code runs a script through `Services.script(name)` (EVALSHA: the
hot paths send a 40-byte hash, and redis-py loads the script again after a Redis restart);
the SMS rate limiter, which has a client but no Services, uses `register` directly.
"""

from __future__ import annotations

import functools
from importlib import resources

from redis import Redis
from redis.commands.core import Script


@functools.cache
def source(name: str) -> str:
    """The text of ivr/lua/<name>.lua (read once per process)."""
    return resources.files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def names() -> list[str]:
    """Every script shipped, by name (file name without `.lua`), sorted."""
    return sorted(entry.name[:-4] for entry in resources.files(__name__).iterdir()
                  if entry.name.endswith(".lua"))


def register(client: Redis, name: str) -> Script:
    """Script `name` bound to `client`, called as `script(keys=[…], args=[…])`."""
    return client.register_script(source(name))
