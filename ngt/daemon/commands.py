"""The console's side of the service: where the leader is, and commands to an agent through the leader
(a Redis stream in, a reply list out; no reply within 30 s ends the wait)."""

import json
import uuid

import redis
from django.conf import settings

LEASE_KEY = "facet:ngt:leader"
COMMAND_STREAM = "facet:ngt:commands"
REPLY_PREFIX = "facet:ngt:reply:"
COMMAND_TIMEOUT = 30
STREAM_LENGTH = 10_000  # old commands trimmed: the leader reads only new ones


def redis_client(url: str | None = None, socket_timeout: float | None = None) -> redis.Redis:
    options = {} if socket_timeout is None else {"socket_timeout": socket_timeout}
    return redis.Redis.from_url(url or settings.REDIS_URL, decode_responses=True, **options)


def leader_location(client: redis.Redis | None = None) -> dict | None:
    """{"host", "address"} of the instance holding the lease, or None when none does."""
    value = (client or redis_client()).get(LEASE_KEY)
    return json.loads(value) if value else None


def send_command(vm_uuid: str, kind: str, timeout: float = COMMAND_TIMEOUT,
                 client: redis.Redis | None = None, arguments: dict | None = None) -> dict | None:
    """The agent's reply to `kind` (with `arguments` as the message's further fields), or None when none came
    within `timeout` seconds (the leader waits as long for the agent, at most COMMAND_TIMEOUT)."""
    # redis-py reads with a 5 s socket timeout by default, which a longer wait for the reply would hit.
    client = client or redis_client(socket_timeout=timeout + 5)
    command_id = uuid.uuid4().hex
    client.xadd(COMMAND_STREAM, {"id": command_id, "vm_uuid": vm_uuid, "type": kind, "timeout": str(timeout),
                                 "arguments": json.dumps(arguments or {})}, maxlen=STREAM_LENGTH, approximate=True)
    answer = client.blpop([REPLY_PREFIX + command_id], timeout=timeout)
    return json.loads(answer[1]) if answer else None
