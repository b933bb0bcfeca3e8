"""The leader role: one instance, holding the lease. It takes the proxies' sessions on port 2073, checks
each hello against the database, refuses a second session per VM, writes guest state in batches, and
routes console commands from the Redis stream to the VM's session."""

import asyncio
import json
import logging
from dataclasses import dataclass, field

from django.utils import timezone

from . import commands, guest_state, wire
from .certificates import SERVICE_ORGANIZATION

log = logging.getLogger("ngt.service")
FLUSH_INTERVAL = 2.0  # seconds: heartbeats move last_seen in memory, one update per VM per batch
HELLO_TIMEOUT = 30


@dataclass
class Session:
    vm_uuid: str
    serial: str
    writer: asyncio.StreamWriter
    waiting: dict[str, asyncio.Future] = field(default_factory=dict)


def hello_problem(opening: dict, hello: dict | None) -> str:
    """What is wrong with a session's first messages before the database is asked ("" when nothing)."""
    if hello is None or hello.get("type") != "hello":
        return "the first message was not a hello"
    if hello.get("vm_uuid") != opening.get("vm_uuid"):
        return f"hello names VM {hello.get('vm_uuid')} on a session of VM {opening.get('vm_uuid')}"
    if opening.get("transport") == "tls" and hello.get("certificate_serial") != opening.get("peer_serial"):
        return "hello names another certificate serial than the one presented"
    return ""


def facts_of(hello: dict) -> dict:
    return {"link_active": True, "last_seen": timezone.now(),
            "installed_version": str(hello.get("agent_version", ""))[:32],
            "guest_os": str(hello.get("os", ""))[:120], "hostname": str(hello.get("hostname", ""))[:255],
            "ip_addresses": [str(address) for address in hello.get("ip_addresses", [])][:64]}


class Leader:
    def __init__(self, redis) -> None:
        self.redis = redis
        self.sessions: dict[str, Session] = {}
        self.changes: dict[str, dict] = {}
        self.jobs: list[asyncio.Task] = []

    def start(self) -> None:
        self.jobs = [asyncio.ensure_future(self.flush_forever()), asyncio.ensure_future(self.route_commands())]

    def stop(self) -> None:
        """At once and without writing: another instance may lead already, and only the leader writes."""
        for job in self.jobs:
            job.cancel()
        for session in list(self.sessions.values()):
            session.writer.close()
        self.sessions.clear()
        self.changes.clear()

    def note(self, vm_uuid: str, **fields) -> None:
        self.changes.setdefault(vm_uuid, {}).update(fields)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            changes, self.changes = self.changes, {}
            if changes:
                await asyncio.to_thread(guest_state.write_batch, changes)

    async def refuse(self, writer: asyncio.StreamWriter, opening: dict, reason: str) -> None:
        writer.write(wire.encode({"id": "l0", "type": "refused", "reason": reason}))
        await asyncio.to_thread(guest_state.record_refusal, opening.get("vm_uuid"), reason, opening.get("peer", ""))
        await wire.close(writer)

    async def accept_proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        subject = dict(item[0] for item in (writer.get_extra_info("peercert") or {}).get("subject", ()))
        if subject.get("organizationName") != SERVICE_ORGANIZATION:  # an agent's certificate chains to the CA too
            log.warning("refused a connection on the leader port from %s: not a service instance",
                        writer.get_extra_info("peername"))
            return await wire.close(writer)
        opening = None
        try:
            opening = await wire.read_message(reader)
            if opening is None or opening.get("type") != "session":
                return await wire.close(writer)
            hello = await asyncio.wait_for(wire.read_message(reader), HELLO_TIMEOUT)
            problem = hello_problem(opening, hello) or await asyncio.to_thread(
                guest_state.check_identity, opening["vm_uuid"], hello.get("certificate_serial", ""),
                opening.get("transport"))
            if not problem and opening["vm_uuid"] in self.sessions:
                problem = "a second concurrent session for this VM"
            if problem:
                return await self.refuse(writer, opening, problem)
            await self.serve(Session(opening["vm_uuid"], hello.get("certificate_serial", ""), writer), hello, reader)
        except (wire.Refusal, OSError, TimeoutError) as exc:
            log.info("proxy session ended: %s", exc or type(exc).__name__)
            await wire.close(writer)
        except Exception:  # one session's failure (the database, a bug) must not go unnoticed, nor spread
            log.exception("proxy session of VM %s failed", opening.get("vm_uuid") if opening else "?")
            await wire.close(writer)

    async def serve(self, session: Session, hello: dict, reader: asyncio.StreamReader) -> None:
        self.sessions[session.vm_uuid] = session
        log.info("VM %s linked (certificate %s)", session.vm_uuid, session.serial or "-")
        try:
            await self.welcome(session, hello)
            asyncio.ensure_future(asyncio.to_thread(guest_state.linked, session.vm_uuid, session.serial))
            while (message := await wire.read_message(reader)) is not None:
                if message["type"] == "heartbeat":
                    self.note(session.vm_uuid, last_seen=timezone.now())
                    session.writer.write(wire.encode({"id": str(message.get("id", "")), "type": "heartbeat_ack"}))
                elif message["type"] == "hello":
                    await self.welcome(session, message)
                elif message["type"] == "reply" and message.get("id") in session.waiting:
                    session.waiting.pop(message["id"]).set_result(message)
        finally:
            if self.sessions.get(session.vm_uuid) is session:
                del self.sessions[session.vm_uuid]
                self.note(session.vm_uuid, link_active=False)
                log.info("VM %s link lost", session.vm_uuid)
            await wire.close(session.writer)

    async def welcome(self, session: Session, hello: dict) -> None:
        self.note(session.vm_uuid, **facts_of(hello))
        session.writer.write(wire.encode({"id": str(hello.get("id", "")), "type": "welcome"}))
        await session.writer.drain()

    async def route_commands(self) -> None:
        newest = await self.redis.xrevrange(commands.COMMAND_STREAM, count=1)
        last_id = newest[0][0] if newest else "0-0"
        while True:
            for _, entries in await self.redis.xread({commands.COMMAND_STREAM: last_id}, block=1000, count=100):
                for entry_id, fields in entries:
                    last_id = entry_id
                    asyncio.ensure_future(self.route(fields))

    async def route(self, command: dict) -> None:
        """Send one console command to its VM's session; the reply (or why none) goes to the reply list."""
        session = self.sessions.get(command.get("vm_uuid", ""))
        if session is None:
            answer = {"ok": False, "error": "the agent of this VM has no link"}
        else:
            future = session.waiting[command["id"]] = asyncio.get_running_loop().create_future()
            session.writer.write(wire.encode({"id": command["id"], "type": command["type"]}))
            try:
                answer = await asyncio.wait_for(future, commands.COMMAND_TIMEOUT)
            except TimeoutError:
                session.waiting.pop(command["id"], None)
                answer = {"ok": False, "error": f"no reply within {commands.COMMAND_TIMEOUT} s"}
        key = commands.REPLY_PREFIX + command["id"]
        await self.redis.lpush(key, json.dumps(answer))
        await self.redis.expire(key, commands.COMMAND_TIMEOUT * 2)
