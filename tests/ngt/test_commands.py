"""Console commands to an agent through Redis."""

import time

from ngt.daemon import commands


def test_a_wait_longer_than_redis_pys_socket_timeout_ends_in_no_reply(redis_url, settings):
    settings.REDIS_URL = redis_url
    started = time.monotonic()
    assert commands.send_command("0f3e", "freeze", timeout=6) is None  # no leader: nobody answers
    assert time.monotonic() - started >= 6
