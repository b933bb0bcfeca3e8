"""The proxy role, on every instance: agents' TLS on the instance's address:2074 (and on the VIP while this
instance leads) and the serial channel sockets of the host's running VMs. Each session's hello goes to the
leader for admission, then each message: by a direct call when the leader runs in this process, otherwise
over this instance's one link to it (link.py).

The proxy checks what it can without the database: the certificate chain (TLS 1.3 only, a client
certificate from the CA), the line limit, JSON, and the message rate; the leader checks the rest."""

import asyncio
import logging
import ssl
from pathlib import Path

from . import wire

log = logging.getLogger("ngt.daemon")
AGENT_PORT = 2074
CHANNEL_SCAN = 2.0  # seconds between looks for channel sockets of newly started VMs
HELLO_TIMEOUT = 30
MAX_PENDING = 4 * wire.MAX_LINE  # bytes waiting for an agent that does not read before it is cut off


def peer_identity(writer: asyncio.StreamWriter) -> tuple[str, str]:
    """The VM uuid (the certificate's common name) and the serial, as the console writes them."""
    certificate = writer.get_extra_info("peercert") or {}
    subject = dict(item[0] for item in certificate.get("subject", ()))
    return subject.get("commonName", ""), f"{int(certificate.get('serialNumber', '0'), 16):040x}"


class AgentConnection:
    """An agent's connection to this proxy, as the leader sees it."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def send(self, message: dict) -> None:
        if self.writer.transport.get_write_buffer_size() > MAX_PENDING:
            log.warning("cut off an agent that does not read (%s)", self.writer.get_extra_info("peername"))
            self.writer.transport.abort()
            return
        self.writer.write(wire.encode(message))

    def hang_up(self) -> None:
        self.writer.close()


class Proxy:
    def __init__(self, instance) -> None:
        self.instance = instance
        self.channels: dict[str, asyncio.Task] = {}

    async def accept_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        vm_uuid, serial = peer_identity(writer)
        peer = (writer.get_extra_info("peername") or ("",))[0]
        await self.serve(reader, writer, {"vm_uuid": vm_uuid, "transport": "tls", "peer_serial": serial,
                                          "peer": peer})

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, opening: dict) -> None:
        """One agent session: its hello admitted by the leader, then its messages handed on until either side
        ends it."""
        gate = wire.FloodGate()
        try:
            hello = await asyncio.wait_for(wire.read_message(reader), HELLO_TIMEOUT)
            leader = await self.instance.leader_route()
            if hello is None or leader is None:
                return  # no leader yet: the agent retries with its backoff
            gate.admit()
            if hello["type"] == "hello":  # anything else the leader refuses as "not a hello"
                wire.check_agent_message(hello)
            session = await leader.admit({**opening, "proxy": self.instance.host_name}, hello,
                                         AgentConnection(writer))
            if session is None:
                return
            try:
                while (message := await wire.read_message(reader)) is not None:
                    gate.admit()
                    leader.receive(session, wire.check_agent_message(message))
            finally:
                leader.release(session)
        except wire.Refusal as refusal:
            writer.write(wire.encode({"id": "p0", "type": "refused", "reason": str(refusal)}))
            await self.instance.record_refusal(opening.get("vm_uuid"), str(refusal), opening.get("peer", ""))
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info("session of VM %s ended: %s", opening.get("vm_uuid"), exc or type(exc).__name__)
        except Exception:  # one session's failure must not go unnoticed, nor spread
            log.exception("session of VM %s failed", opening.get("vm_uuid"))
        finally:
            await wire.close(writer)

    async def watch_channels(self) -> None:
        """Keep one session per running VM whose channel socket exists (the hypervisor made it)."""
        while True:
            try:
                for vm_uuid, path in await self.instance.channel_sockets():
                    task = self.channels.get(vm_uuid)
                    if (task is None or task.done()) and Path(path).exists():
                        self.channels[vm_uuid] = asyncio.ensure_future(self.serve_channel(vm_uuid, path))
            except Exception:  # the database away for a moment: channels of VMs started later still get served
                log.exception("could not look for channel sockets; trying again in %s s", CHANNEL_SCAN)
            await asyncio.sleep(CHANNEL_SCAN)

    async def serve_channel(self, vm_uuid: str, path: str) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=wire.MAX_LINE)
        except OSError as exc:
            log.info("channel of VM %s not open yet: %s", vm_uuid, exc)
            return
        writer.write(wire.encode({"id": "p0", "type": "hello_request"}))  # the agent may be up already
        await self.serve(reader, writer, {"vm_uuid": vm_uuid, "transport": "serial", "peer_serial": "",
                                          "peer": f"channel {path}"})


def agent_context(certificate: Path, key: Path, ca_pem: str) -> ssl.SSLContext:
    """The listener agents reach: TLS 1.3 only, a client certificate chaining to the CA required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(certificate, key)
    context.load_verify_locations(cadata=ca_pem)
    return context
