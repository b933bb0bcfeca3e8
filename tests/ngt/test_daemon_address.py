"""Two installations on one machine (issue 14, item 19): a Guest Tools Service whose cluster address is already
served by somebody else's (no lease in its own Redis) refuses to start and says why, instead of fighting the
other one for its agents; as does one whose own address is taken. Real redis-server, real sockets."""

import asyncio
import socket

import pytest

from console.models import Host
from ngt.daemon import commands
from ngt.daemon.instance import AddressTaken, instance_for
from ngt.daemon.proxy import AGENT_PORT
from tests.ngt.test_agent import free_vip
from tests.realparts import run_coroutine


def listening(address: str) -> socket.socket:
    """Another installation's service, as far as a connection can tell."""
    server = socket.create_server((address, AGENT_PORT))
    server.listen()
    return server


def start(host: Host, vip: str, redis_url: str, settings) -> None:
    settings.REDIS_URL = redis_url
    commands.redis_client(redis_url).delete(commands.LEASE_KEY)  # this installation has no leader
    instance = instance_for(host.name, free_vip(), vip)
    run_coroutine(asyncio.wait_for(instance.run(), 10))


def test_a_second_service_on_the_same_cluster_address_is_refused(cluster, redis_url, settings):
    vip = free_vip()
    with listening(vip), pytest.raises(AddressTaken, match=rf"cluster address {vip}:2074 is already served"):
        start(Host.objects.get(name="host-1"), vip, redis_url, settings)


def test_a_taken_own_address_is_refused(cluster, redis_url, settings):
    host, address = Host.objects.get(name="host-1"), free_vip()
    settings.REDIS_URL = redis_url
    commands.redis_client(redis_url).delete(commands.LEASE_KEY)
    with listening(address), pytest.raises(AddressTaken, match=rf"{address}:2074 is taken by another process"):
        run_coroutine(asyncio.wait_for(instance_for(host.name, address, free_vip()).run(), 10))
