"""One Guest Tools Service instance: always a proxy, the leader while it holds the lease in Redis.

The lease is set-if-absent with an expiry and renewed every second; a failed renewal (lease taken, Redis
gone) drops the role and the VIP listener at once, so two leaders never write at the same time for longer
than one renewal."""

import asyncio
import errno
import gc
import json
import logging
import os
import ssl
import time
from asyncio import sslproto
from pathlib import Path

import redis.asyncio as aioredis
from django.conf import settings

from console.core.drivers import DriverError, driver_for
from console.models import Host
from console.services.hosts import beat_guest_tools
from ngt.services import authority

from . import commands, guest_state, wire
from .certificates import server_identity
from .gate import ConnectionGate
from .leader import Leader
from .link import LEADER_PORT, LINK_LINE, LeaderLink, serve_link
from .proxy import AGENT_PORT, Proxy, agent_context
from .vip import FloatingAddress

log = logging.getLogger("ngt.daemon")
LEASE_SECONDS, RENEW_EVERY = 5, 1.0
RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
# asyncio gives every TLS connection a read buffer of SSLProtocol.max_size, 256 KiB, zeroed (so resident) at
# once: half a gigabyte for 2,000 agents. A TLS record holds at most 16 KiB, so a buffer of that size only
# means more reads for a long line, and the service never reads long lines.
TLS_READ_BUFFER = 16 * 1024
PROBE_SECONDS = 2.0
# A Redis call that has not answered by then fails: a leader whose renewals hang steps down (and drops the
# VIP) long before its lease can pass to another instance.
REDIS_TIMEOUT = 1.5
HEARTBEAT_EVERY = 5.0  # the host page's "Guest Tools Service seen"


class AddressTaken(SystemExit):
    """This instance cannot serve its addresses: it stops, saying which and why (no traceback)."""


def write_identity(host: Host, vip: str, address: str, directory: Path) -> tuple[Path, Path, str]:
    """This instance's certificate and key (0600), new at each start, and the CA certificate."""
    signer = authority.open_authority(authority.authority_for(host.cluster))
    identity = server_identity(signer, host.name, [vip, address])
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    certificate, key = directory / "server.pem", directory / "server.key"
    certificate.write_bytes(identity.certificate_pem)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(identity.key_pem)
    return certificate, key, identity.ca_pem.decode()


class Instance:
    def __init__(self, host: Host, address: str, vip: str, redis_url: str, directory: Path,
                 floating: FloatingAddress | None = None) -> None:
        self.host_name, self.address, self.vip, self.redis_url = host.name, address, vip, redis_url
        certificate, key, ca_pem = write_identity(host, vip, address, directory)
        self.agent_context = agent_context(certificate, key, ca_pem)
        self.peer_server_context = agent_context(certificate, key, ca_pem)  # proxies present their own
        self.peer_client_context = ssl.create_default_context(cadata=ca_pem)
        self.peer_client_context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.peer_client_context.load_cert_chain(certificate, key)
        self.gate = ConnectionGate.from_settings(settings)  # one for all of this instance's TLS ports
        self.holder = json.dumps({"host": self.host_name, "address": address})
        self.proxy = Proxy(self)
        self.leader: Leader | None = None
        self.leader_address: str | None = None
        self.leader_servers: list[asyncio.Server] = []
        self.link: LeaderLink | None = None
        self.floating = floating  # None: the VIP is on this machine already (one machine's loopback)
        self.renewed_at = 0.0
        self.beaten_at = 0.0

    async def run(self) -> None:
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
        # What Django and the modules made at start lives as long as the process: out of the collector's
        # sight, a full collection (a pause of the loop) walks only the sessions' objects.
        gc.freeze()
        self.redis = aioredis.from_url(self.redis_url, decode_responses=True, socket_timeout=REDIS_TIMEOUT,
                                       socket_connect_timeout=REDIS_TIMEOUT)
        self.linking = asyncio.Lock()
        if self.floating is not None:
            await self.floating.remove()  # left here by a killed instance of this host: not ours until elected
        await self.refuse_a_second_service()
        try:
            await asyncio.start_server(self.gate.listener(self.agent_context, self.proxy.accept_tls), self.address,
                                       AGENT_PORT, limit=wire.MAX_LINE)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressTaken(f"{self.address}:{AGENT_PORT} is taken by another process (another Guest "
                                   "Tools Service, perhaps of another Facet installation on this machine): give "
                                   "this host another address (--address)") from None
            raise
        log.info("Guest Tools Service of host %s listening on %s:%s", self.host_name, self.address, AGENT_PORT)
        asyncio.ensure_future(self.proxy.watch_channels())
        while True:
            await self.elect()
            await self.beat()
            await asyncio.sleep(RENEW_EVERY)

    async def beat(self) -> None:
        """The host page shows when this instance last said it runs."""
        if time.monotonic() - self.beaten_at < HEARTBEAT_EVERY:
            return
        try:
            await asyncio.to_thread(beat_guest_tools, self.host_name)
            self.beaten_at = time.monotonic()
        except Exception as exc:  # the database away for a moment: the next round tries again
            log.warning("could not write this instance's heartbeat: %s", exc)

    async def refuse_a_second_service(self) -> None:
        """Nobody of this installation leads (no lease in its Redis), yet the cluster address answers: another
        installation's Guest Tools Service serves it, and the two would take each other's agents."""
        if await self.redis.get(commands.LEASE_KEY):
            return
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.vip, AGENT_PORT), PROBE_SECONDS)
        except (TimeoutError, OSError):
            return  # free, as it should be
        writer.close()
        raise AddressTaken(f"the cluster address {self.vip}:{AGENT_PORT} is already served, but not by this "
                           "installation (its Redis holds no leader): another Facet installation uses the same "
                           "cluster address; give each installation its own cluster virtual IP")

    async def elect(self) -> None:
        """Take, keep or lose the lease; and learn who leads, once a second rather than once per session."""
        try:
            location = await self.redis.get(commands.LEASE_KEY)
            self.leader_address = json.loads(location)["address"] if location else None
            if self.leader is None:
                if await self.redis.set(commands.LEASE_KEY, self.holder, nx=True, ex=LEASE_SECONDS):
                    self.renewed_at = time.monotonic()
                    await self.lead()
            elif time.monotonic() - self.renewed_at > LEASE_SECONDS / 2:
                # This loop was held up (or Redis answered too slowly): the lease may be someone else's soon.
                self.step_down(f"the lease was last renewed {time.monotonic() - self.renewed_at:.1f} s ago")
            elif not await self.redis.eval(RENEW, 1, commands.LEASE_KEY, self.holder, LEASE_SECONDS * 1000):
                self.step_down("the lease is held by another instance")
            else:
                self.renewed_at = time.monotonic()
        except (OSError, aioredis.RedisError) as exc:
            if self.leader is not None:
                self.step_down(f"Redis is unreachable ({exc})")

    async def lead(self) -> None:
        leader = self.leader = Leader(self.redis)
        if self.link is not None:
            self.link.close()  # its sessions were with the leader that went away
        try:
            if self.floating is not None:
                await self.floating.add()
            self.leader_servers = [
                await asyncio.start_server(
                    self.gate.listener(self.peer_server_context,
                                       lambda reader, writer: serve_link(leader, reader, writer)),
                    self.address, LEADER_PORT, limit=LINK_LINE),
                await asyncio.start_server(self.gate.listener(self.agent_context, self.proxy.accept_tls), self.vip,
                                           AGENT_PORT, limit=wire.MAX_LINE)]
        except OSError as exc:
            taken = " (taken by another process: another installation on the same cluster address?)" if (
                exc.errno == errno.EADDRINUSE) else ""
            self.step_down(f"cannot listen ({exc}){taken}")
            await self.redis.delete(commands.LEASE_KEY)
            return
        self.leader.start()
        log.info("leading: listening on %s:%s for proxies and on the VIP %s:%s", self.address, LEADER_PORT,
                 self.vip, AGENT_PORT)

    def step_down(self, why: str) -> None:
        log.warning("no longer the leader: %s", why)
        for server in self.leader_servers:
            server.close()
        self.leader_servers = []
        if self.floating is not None:
            self.floating.remove_now()
        if self.leader is not None:
            self.leader.stop()
        self.leader = None

    async def leader_route(self) -> Leader | LeaderLink | None:
        """Where this proxy's sessions go: the leader itself when it runs in this process (no connection, no
        TLS), else the one link to the instance that leads; None while nobody leads."""
        if self.leader is not None:
            return self.leader
        async with self.linking:  # the sessions arriving together share one new link
            if self.link is not None and (not self.link.is_open or self.link.address != self.leader_address):
                self.link.close()
                self.link = None
            if self.link is None and self.leader_address:
                self.link = await LeaderLink.connect(self.leader_address, self.peer_client_context)
        return self.link

    async def channel_sockets(self) -> list[tuple[str, str]]:
        def paths() -> list[tuple[str, str]]:
            found = []
            for vm in guest_state.running_vms(self.host_name):
                try:
                    path = driver_for(vm).agent_channel_path(vm)
                except DriverError as exc:  # libvirtd restarting, a domain gone since the query: not the others
                    log.warning("no channel socket for VM %s this round: %s", vm.name, exc)
                    continue
                if path is not None:
                    found.append((str(vm.uuid), str(path)))
            return found
        return await asyncio.to_thread(paths)

    async def record_refusal(self, vm_uuid: str | None, reason: str, peer: str) -> None:
        await asyncio.to_thread(guest_state.record_refusal, vm_uuid, reason, peer)


def instance_for(host_name: str, address: str = "", vip: str = "") -> Instance:
    host = Host.objects.select_related("cluster").get(name=host_name)
    vip = vip or host.cluster.virtual_ip or settings.CLUSTER_VIP
    return Instance(host, address or host.address or "127.0.0.1", vip, settings.REDIS_URL,
                    Path(settings.DATA_DIR) / "guest-tools-service" / host_name, floating_address(vip))


def floating_address(vip: str) -> FloatingAddress | None:
    """The VIP this instance adds to its interface while it leads, when FACET_CLUSTER_VIP_INTERFACE names one."""
    if not settings.FACET_CLUSTER_VIP_INTERFACE:
        return None
    return FloatingAddress(vip, settings.FACET_CLUSTER_VIP_INTERFACE, settings.FACET_CLUSTER_VIP_PREFIX)
