"""Login attempts, counted per client address in the console's Redis: one counter that every web worker and
every login path (the login page, the admin's, `POST /api/v1/auth/token/`) shares, so that neither more
workers nor another door gives more tries. The address is `actors.client_address`: REMOTE_ADDR, or what the
trusted reverse proxies (FACET_NUM_PROXIES) forwarded, never what a client wrote into X-Forwarded-For.

The limit is FACET_LOGIN_RATE (default 30/minute): a fixed window that starts at an address's first attempt;
the attempt past the limit is refused, saying how many seconds remain. Were Redis not to answer, logins are
not limited (and the log says so at each attempt): a console without Redis runs no task either, and locking
every Admin out then would keep them from mending it."""

import logging
import re

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger(__name__)
RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
KEY = "facet:login-attempts:{address}"

_clients: dict[str, redis.Redis] = {}


def rate() -> tuple[int, int]:
    """(attempts, seconds) of FACET_LOGIN_RATE, e.g. `30/minute`."""
    match = RATE.match(settings.FACET_LOGIN_RATE)
    if match is None:
        raise ImproperlyConfigured(f"FACET_LOGIN_RATE: give attempts per second, minute, hour or day, such as "
                                   f"30/minute, not {settings.FACET_LOGIN_RATE!r}")
    return int(match[1]), SECONDS[match[2][0]]


def _redis() -> redis.Redis:
    url = settings.REDIS_URL
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return _clients[url]


def count_attempt(address: str | None) -> int | None:
    """Count one login attempt from `address`. None while it is within the limit; else how many seconds
    remain until the next attempt is counted afresh."""
    limit, window = rate()
    key = KEY.format(address=address or "unknown")
    try:
        pipeline = _redis().pipeline()
        pipeline.set(key, 0, ex=window, nx=True)  # the window starts at the first attempt
        pipeline.incr(key)
        pipeline.ttl(key)
        _, attempts, remaining = pipeline.execute()
    except redis.RedisError as error:
        log.error("login attempts from %s cannot be counted, so are not limited: Redis: %s", address, error)
        return None
    if attempts <= limit:
        return None
    return max(int(remaining), 1)


def refusal(seconds: int) -> str:
    return f"Too many login attempts from your address: try again in {seconds} seconds."
