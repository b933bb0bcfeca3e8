"""The leader role: one instance, holding the lease. It admits each agent session a proxy hands it (checking
the hello against the database, refusing a second session per VM), answers heartbeats, writes guest state in
batches, and routes console commands from the Redis stream to the VM's session.

A proxy in the leader's own process calls `admit`, `receive` and `release` directly; a proxy elsewhere
reaches them over its link to port 2073 (link.py)."""

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Protocol

from . import commands, guest_state, wire

log = logging.getLogger("ngt.daemon")
# Seconds: heartbeats and hellos' facts are remembered in memory and written once per batch, so the console
# shows a hello's facts at most this long after its welcome, plus the writes of its batch and the one before.
FLUSH_INTERVAL = 2.0


class Agent(Protocol):
    """The end of one agent's session, wherever its proxy runs."""

    def send(self, message: dict) -> None: ...

    def hang_up(self) -> None: ...


@dataclass(eq=False)
class Session:
    vm_uuid: str
    vm_id: int
    serial: str
    transport: str
    agent: Agent
    waiting: dict[str, asyncio.Future] = field(default_factory=dict)


def hello_problem(opening: dict, hello: dict) -> str:
    """What is wrong with a session's first message before the database is asked ("" when nothing)."""
    if hello.get("type") != "hello":
        return "the first message was not a hello"
    try:
        wire.check_agent_message(hello)  # checked by a proxy already; again here, where the link delivers it
    except wire.Refusal as refusal:
        return str(refusal)
    if hello.get("vm_uuid") != opening.get("vm_uuid"):
        return f"hello names VM {hello.get('vm_uuid')} on a session of VM {opening.get('vm_uuid')}"
    if opening.get("transport") == "tls" and hello.get("certificate_serial") != opening.get("peer_serial"):
        return "hello names another certificate serial than the one presented"
    return ""


def facts_of(hello: dict) -> dict:
    """What a hello tells about the guest, as GuestTools columns (its last_seen is the batch's time)."""
    return {"link_active": True, "installed_version": fact_text(hello.get("agent_version", ""), 32),
            "guest_os": fact_text(hello.get("os", ""), 120), "hostname": fact_text(hello.get("hostname", ""), 255),
            "ip_addresses": [fact_text(address, 64) for address in hello.get("ip_addresses", [])][:64]}


def fact_text(value, longest: int) -> str:
    """Text PostgreSQL can store: a NUL character there would fail the whole batch's statement."""
    return str(value).replace("\x00", "")[:longest]


def command_details(command: dict) -> tuple[dict, float]:
    """A console command's further fields for the agent, and how long to wait for its reply (at most
    COMMAND_TIMEOUT); a stream entry of an older console has neither."""
    try:
        arguments = json.loads(command.get("arguments") or "{}")
        timeout = float(command.get("timeout") or commands.COMMAND_TIMEOUT)
    except (ValueError, TypeError):
        arguments, timeout = {}, commands.COMMAND_TIMEOUT
    if not isinstance(arguments, dict):
        arguments = {}
    return arguments, max(0.1, min(timeout, commands.COMMAND_TIMEOUT))


class IdentityChecks:
    """Hellos' identity checks, answered together: while one batch is in the database the next one gathers,
    so a reconnect storm costs a few queries per batch instead of two per hello in a thread of their own
    (whose Python holds the GIL the event loop needs for the handshakes)."""

    MOST_AT_ONCE = 1000  # keeps a query's bound parameters far below the databases' limits

    def __init__(self) -> None:
        self.waiting: list[tuple[guest_state.IdentityRequest, asyncio.Future]] = []
        self.checking: asyncio.Future | None = None

    async def check(self, request: guest_state.IdentityRequest) -> guest_state.Identity:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((request, future))
        if self.checking is None or self.checking.done():
            self.checking = asyncio.ensure_future(self.check_waiting())
        return await future

    async def check_waiting(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting[:self.MOST_AT_ONCE], self.waiting[self.MOST_AT_ONCE:]
            futures = [future for _, future in batch]
            try:
                identities = await asyncio.to_thread(guest_state.check_identities, [request for request, _ in batch])
            except Exception as exc:  # the database failed: each hello of the batch learns it, as it would alone
                for future in futures:
                    if not future.done():  # done: its session ended meanwhile
                        future.set_exception(exc)
                continue
            for future, identity in zip(futures, identities, strict=True):
                if not future.done():
                    future.set_result(identity)


class Leader:
    def __init__(self, redis) -> None:
        self.redis = redis
        self.identities = IdentityChecks()
        self.sessions: dict[str, Session] = {}
        # Heartbeats only add a VM id (an int, which the garbage collector does not track) to a set: objects
        # that outlive a batch, such as a timestamp per VM, end up in full collections that pause the loop.
        self.heard: set[int] = set()
        self.changes: dict[int, dict] = {}
        # The guests' customization results heard since the last batch, by VM id: relayed once per batch.
        self.customization: dict[int, tuple[str, str]] = {}
        self.jobs: list[asyncio.Task] = []
        self.links: set[asyncio.StreamWriter] = set()  # proxies' connections to port 2073
        self.stopped = False

    def start(self) -> None:
        self.jobs = [asyncio.ensure_future(self.flush_forever()), asyncio.ensure_future(self.route_commands())]

    def stop(self) -> None:
        """At once and without writing: another instance may lead already, and only the leader writes."""
        self.stopped = True
        for job in self.jobs:
            job.cancel()
        for session in list(self.sessions.values()):
            session.agent.hang_up()
        for link in self.links:
            link.close()
        self.sessions.clear()
        self.heard.clear()
        self.changes.clear()
        self.customization.clear()

    def note(self, session: Session, **fields) -> None:
        self.changes.setdefault(session.vm_id, {}).update(fields)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            heard, self.heard = self.heard, set()
            changes, self.changes = self.changes, {}
            if heard or changes:
                try:
                    await asyncio.to_thread(guest_state.write_batch, heard, changes)
                except Exception:  # the database failed this batch; the next ones still get their chance
                    log.exception("guest state of %d VMs not written", len(heard | changes.keys()))
            customization, self.customization = self.customization, {}
            if customization:
                try:
                    await asyncio.to_thread(guest_state.relay_customization, customization)
                except Exception:  # each agent says it again in its next session; the phone_home stays too
                    log.exception("customization results of %d VMs not relayed", len(customization))
            await self.end_revoked_sessions()

    async def end_revoked_sessions(self) -> None:
        """Hang up the TLS sessions whose certificate is no longer their VM's current one (revoked by a
        disable or a remount, or its VM deleted): a revoked certificate speaks for nobody, at most one flush
        interval after the revocation. On serial the channel, not the certificate, is the identity."""
        by_serial = {session.serial: session for session in self.sessions.values() if session.transport == "tls"}
        if not by_serial:
            return
        try:
            stale = await asyncio.to_thread(guest_state.stale_serials, list(by_serial))
        except Exception:  # the database away for a moment: the next flush asks again
            log.exception("could not check the certificates of %d sessions", len(by_serial))
            return
        for serial in stale:
            session = by_serial[serial]
            if self.sessions.get(session.vm_uuid) is session:  # not ended meanwhile
                self.end(session, f"certificate {serial} is no longer the current certificate of the VM")

    async def admit(self, opening: dict, hello: dict, agent: Agent) -> Session | None:
        """The session of the agent that sent `hello`, welcomed; None when it is refused (and told why).
        `opening` is what its proxy knows: vm_uuid, transport, peer_serial (TLS), peer, proxy."""
        problem, identity = hello_problem(opening, hello), None
        if not problem:
            identity = await self.identities.check(guest_state.IdentityRequest(
                opening["vm_uuid"], hello.get("certificate_serial", ""), opening.get("transport")))
            problem = identity.problem
        if self.stopped:
            return None  # the role was lost while the database answered
        if not problem and opening["vm_uuid"] in self.sessions:
            problem = "a second concurrent session for this VM"
        if problem:
            agent.send({"id": "l0", "type": "refused", "reason": problem})
            await asyncio.to_thread(guest_state.record_refusal, opening.get("vm_uuid"), problem,
                                    opening.get("peer", ""))
            return None
        session = self.sessions[opening["vm_uuid"]] = Session(
            opening["vm_uuid"], identity.vm_id, hello.get("certificate_serial", ""), opening.get("transport"), agent)
        log.info("VM %s linked (certificate %s)", session.vm_uuid, session.serial or "-")
        self.welcome(session, hello)
        if identity.iso_mounted:
            asyncio.ensure_future(asyncio.to_thread(guest_state.linked, session.vm_uuid, session.serial))
        return session

    def receive(self, session: Session, message: dict) -> None:
        """One message of an admitted session; one the service cannot read ends that session, and only it."""
        try:
            wire.check_agent_message(message)  # checked by a proxy already; again here, where the link delivers it
        except wire.Refusal as refusal:
            self.end(session, str(refusal))
            return
        if message["type"] == "heartbeat":
            self.heard.add(session.vm_id)
            session.agent.send({"id": str(message.get("id", "")), "type": "heartbeat_ack"})
        elif message["type"] == "hello":
            self.hello_again(session, message)
        elif message["type"] == "customization":
            self.customization[session.vm_id] = (message["status"], message.get("message", ""))
        elif message["type"] == "reply" and message.get("id") in session.waiting:
            session.waiting.pop(message["id"]).set_result(message)
        elif message["type"] == "ssr":
            asyncio.ensure_future(self.restore(session, message))

    async def restore(self, session: Session, message: dict) -> None:
        """A self-service restore request of the guest, for its own VM (the session's), answered by a reply."""
        try:
            answer = await asyncio.to_thread(guest_state.restore_request, session.vm_uuid, message)
        except Exception:  # the database or the hypervisor failed: the guest hears so, the session goes on
            log.exception("ssr request of VM %s failed", session.vm_uuid)
            answer = {"ok": False, "error": "the console failed to answer; see the Guest Tools Service log"}
        if self.sessions.get(session.vm_uuid) is session:
            session.agent.send({**answer, "id": message["id"], "type": "reply"})

    def release(self, session: Session) -> None:
        """The session ended (the agent or its proxy went away)."""
        if self.sessions.get(session.vm_uuid) is session:
            del self.sessions[session.vm_uuid]
            self.note(session, link_active=False)
            log.info("VM %s link lost", session.vm_uuid)
        for future in session.waiting.values():  # the console's commands waiting on it learn now, not in 30 s
            if not future.done():
                future.set_result({"ok": False, "error": "the agent's link ended"})
        session.waiting.clear()

    def end(self, session: Session, problem: str) -> None:
        """Refuse and hang up one session, saying why to the agent and in the audit log."""
        session.agent.send({"id": "l0", "type": "refused", "reason": problem})
        session.agent.hang_up()
        self.release(session)  # a proxy across the link forgets the session on hang-up: say it ended here
        asyncio.ensure_future(asyncio.to_thread(guest_state.record_refusal, session.vm_uuid, problem,
                                                f"{session.transport} session"))

    def hello_again(self, session: Session, hello: dict) -> None:
        """A hello within a session. On serial it follows a remount: the agent installed the new ISO and
        reopened its port, which the host side of the channel does not see, so the hello names the new
        certificate serial and that ISO is released as after a first hello. A hello that names another VM,
        or on TLS another serial than the certificate presented, ends the session."""
        problem = hello_problem({"vm_uuid": session.vm_uuid, "transport": session.transport,
                                 "peer_serial": session.serial}, hello)
        if problem:
            self.end(session, problem)
            return
        serial = str(hello.get("certificate_serial", ""))
        if serial != session.serial:
            session.serial = serial
            log.info("VM %s speaks with certificate %s", session.vm_uuid, serial or "-")
            asyncio.ensure_future(asyncio.to_thread(guest_state.linked, session.vm_uuid, serial))
        self.welcome(session, hello)

    def welcome(self, session: Session, hello: dict) -> None:
        self.heard.add(session.vm_id)
        self.note(session, **facts_of(hello))
        session.agent.send({"id": str(hello.get("id", "")), "type": "welcome"})

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
            arguments, timeout = command_details(command)
            session.agent.send({**arguments, "id": command["id"], "type": command["type"]})
            try:
                answer = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                session.waiting.pop(command["id"], None)
                answer = {"ok": False, "error": f"no reply within {timeout:g} s"}
        key = commands.REPLY_PREFIX + command["id"]
        await self.redis.lpush(key, json.dumps(answer))
        await self.redis.expire(key, commands.COMMAND_TIMEOUT * 2)
