"""The proxy role, on every instance: agents' TLS on the instance's address:2074 (and on the VIP while this
instance leads) and the serial channel sockets of the host's running VMs, each session forwarded to the
leader over its own mutual-TLS connection to port 2073.

The proxy checks what it can without the database: the certificate chain (TLS 1.3 only, a client
certificate from the CA), the line limit, JSON, and the message rate; the leader checks the rest."""

import asyncio
import logging
import ssl
from pathlib import Path

from . import wire

log = logging.getLogger("ngt.service")
AGENT_PORT, LEADER_PORT = 2074, 2073
CHANNEL_SCAN = 2.0  # seconds between looks for channel sockets of newly started VMs


def peer_identity(writer: asyncio.StreamWriter) -> tuple[str, str]:
    """The VM uuid (the certificate's common name) and the serial, as the console writes them."""
    certificate = writer.get_extra_info("peercert") or {}
    subject = dict(item[0] for item in certificate.get("subject", ()))
    return subject.get("commonName", ""), f"{int(certificate.get('serialNumber', '0'), 16):040x}"


class Proxy:
    def __init__(self, instance) -> None:
        self.instance = instance
        self.channels: dict[str, asyncio.Task] = {}

    async def accept_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        vm_uuid, serial = peer_identity(writer)
        peer = (writer.get_extra_info("peername") or ("",))[0]
        await self.forward(reader, writer, {"vm_uuid": vm_uuid, "transport": "tls", "peer_serial": serial,
                                            "peer": peer})

    async def forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: dict) -> None:
        """Pipe one agent session to the leader and back until either side ends it."""
        leader = None
        try:
            leader = await self.instance.connect_to_leader()
            if leader is None:
                return  # no leader yet: the agent retries with its backoff
            leader_reader, leader_writer = leader
            leader_writer.write(wire.encode({"id": "p", "type": "session", "proxy": self.instance.host_name,
                                             **session}))
            await leader_writer.drain()
            pumps = [asyncio.ensure_future(self.agent_to_leader(reader, leader_writer, session)),
                     asyncio.ensure_future(self.leader_to_agent(leader_reader, writer))]
            done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pending:
                pump.cancel()
            for pump in done:
                pump.result()
        except wire.Refusal as refusal:
            await self.instance.record_refusal(session.get("vm_uuid"), str(refusal), session.get("peer", ""))
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info("session of VM %s ended: %s", session.get("vm_uuid"), exc or type(exc).__name__)
        except Exception:  # one session's failure must not go unnoticed, nor spread
            log.exception("session of VM %s failed", session.get("vm_uuid"))
        finally:
            if leader is not None:
                await wire.close(leader[1])
            await wire.close(writer)

    @staticmethod
    async def agent_to_leader(reader: asyncio.StreamReader, leader_writer: asyncio.StreamWriter,
                              session: dict) -> None:
        gate = wire.FloodGate()
        while (message := await wire.read_message(reader)) is not None:
            gate.admit()
            leader_writer.write(wire.encode(message))
            await leader_writer.drain()

    @staticmethod
    async def leader_to_agent(leader_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await leader_reader.readline():
            writer.write(line)
            await writer.drain()

    async def watch_channels(self) -> None:
        """Keep one session per running VM whose channel socket exists (the hypervisor made it)."""
        while True:
            for vm_uuid, path in await self.instance.channel_sockets():
                task = self.channels.get(vm_uuid)
                if (task is None or task.done()) and Path(path).exists():
                    self.channels[vm_uuid] = asyncio.ensure_future(self.serve_channel(vm_uuid, path))
            await asyncio.sleep(CHANNEL_SCAN)

    async def serve_channel(self, vm_uuid: str, path: str) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=wire.MAX_LINE)
        except OSError as exc:
            log.info("channel of VM %s not open yet: %s", vm_uuid, exc)
            return
        writer.write(wire.encode({"id": "p0", "type": "hello_request"}))  # the agent may be up already
        await self.forward(reader, writer, {"vm_uuid": vm_uuid, "transport": "serial", "peer_serial": "",
                                            "peer": f"channel {path}"})


def agent_context(certificate: Path, key: Path, ca_pem: str) -> ssl.SSLContext:
    """The listener agents reach: TLS 1.3 only, a client certificate chaining to the CA required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(certificate, key)
    context.load_verify_locations(cadata=ca_pem)
    return context
