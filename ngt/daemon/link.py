"""A proxy's link to a leader in another instance: one mutual-TLS connection to port 2073 per proxy, carrying
all of that proxy's agent sessions, each line tagged with the session's number (`sid`).

    proxy -> leader   {"type": "open", "sid", "session": {vm_uuid, transport, peer_serial, peer, proxy},
                       "hello": {...}}                     an agent's first message, to be admitted
                      {"type": "agent", "sid", "message"}  a message from the agent
                      {"type": "end", "sid"}               the agent went away
    leader -> proxy   {"type": "agent", "sid", "message"}  a message for the agent (welcome, refused, ack, command)
                      {"type": "admitted", "sid", "ok"}    the answer to an open, after the welcome or refusal
                      {"type": "end", "sid"}               hang up on the agent

One connection rather than one per session: every connection costs a TLS handshake and buffers on both ends,
and the link's lines need no flow control of their own since the proxy holds each agent to the flood limit."""

import asyncio
import itertools
import logging
import ssl

from . import wire
from .certificates import SERVICE_ORGANIZATION
from .leader import Agent, Leader, Session

log = logging.getLogger("ngt.daemon")
LEADER_PORT = 2073
LINK_LINE = 2 * wire.MAX_LINE  # an agent's line and its envelope


class LeaderLink:
    """The proxy's end: `admit`, `receive` and `release` as the Leader has them, over the connection."""

    def __init__(self, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.address, self.reader, self.writer = address, reader, writer
        self.numbers = itertools.count(1)
        self.agents: dict[int, Agent] = {}
        self.admissions: dict[int, asyncio.Future] = {}
        self.reading = asyncio.ensure_future(self.read())

    @classmethod
    async def connect(cls, address: str, context: ssl.SSLContext) -> "LeaderLink":
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            address, LEADER_PORT, ssl=context, server_hostname=address, limit=LINK_LINE), 10)
        log.info("linked to the leader at %s:%s", address, LEADER_PORT)
        return cls(address, reader, writer)

    @property
    def is_open(self) -> bool:
        return not self.reading.done()

    def close(self) -> None:
        self.reading.cancel()

    async def admit(self, opening: dict, hello: dict, agent: Agent) -> int | None:
        if not self.is_open:
            return None  # the leader went away since this session picked the link
        sid = next(self.numbers)
        self.agents[sid] = agent
        admission = self.admissions[sid] = asyncio.get_running_loop().create_future()
        self.writer.write(wire.encode({"type": "open", "sid": sid, "session": opening, "hello": hello}))
        if await admission:
            return sid
        self.agents.pop(sid, None)
        return None

    def receive(self, sid: int, message: dict) -> None:
        self.writer.write(wire.encode({"type": "agent", "sid": sid, "message": message}))

    def release(self, sid: int) -> None:
        if self.agents.pop(sid, None) is not None:
            self.writer.write(wire.encode({"type": "end", "sid": sid}))

    async def read(self) -> None:
        try:
            while (line := await wire.read_message(self.reader)) is not None:
                if problem := wire.link_problem(line):
                    log.warning("ignored a line from the leader at %s: %s", self.address, problem)
                    continue
                sid = line["sid"]
                if line["type"] == "agent" and sid in self.agents:
                    self.agents[sid].send(line["message"])
                elif line["type"] == "admitted" and sid in self.admissions:
                    self.admissions.pop(sid).set_result(bool(line.get("ok")))
                elif line["type"] == "end" and sid in self.agents:
                    self.agents.pop(sid).hang_up()
            log.info("the leader at %s closed the link", self.address)
        except (wire.Refusal, OSError, ssl.SSLError) as exc:
            log.warning("the link to the leader at %s failed: %s", self.address, exc)
        finally:  # the agents reconnect with their backoff and reach whoever leads then
            for admission in self.admissions.values():
                admission.set_result(False)
            for agent in self.agents.values():
                agent.hang_up()
            self.admissions.clear()
            self.agents.clear()
            self.writer.close()


class LinkedAgent:
    """The leader's view of an agent behind a proxy's link."""

    def __init__(self, writer: asyncio.StreamWriter, sid: int, sessions: dict) -> None:
        self.writer, self.sid, self.sessions = writer, sid, sessions

    def send(self, message: dict) -> None:
        self.writer.write(wire.encode({"type": "agent", "sid": self.sid, "message": message}))

    def hang_up(self) -> None:
        self.sessions.pop(self.sid, None)
        self.writer.write(wire.encode({"type": "end", "sid": self.sid}))


async def serve_link(leader: Leader, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The leader's end of one proxy's link: each open admitted in a task of its own (the database answers
    it), the messages of admitted sessions handed to the leader in order."""
    subject = dict(item[0] for item in (writer.get_extra_info("peercert") or {}).get("subject", ()))
    if subject.get("organizationName") != SERVICE_ORGANIZATION:  # an agent's certificate chains to the CA too
        log.warning("refused a connection on the leader port from %s: not a service instance",
                    writer.get_extra_info("peername"))
        return await wire.close(writer)
    sessions: dict[int, Session] = {}
    admitting: set[asyncio.Task] = set()

    async def admit(sid: int, opening: dict, hello: dict) -> None:
        session = None
        try:
            session = await leader.admit(opening, hello, LinkedAgent(writer, sid, sessions))
        except Exception:  # the database failed it: this agent retries, and its proxy hears the answer
            log.exception("could not admit a session of VM %s", opening.get("vm_uuid"))
        if session is not None:
            sessions[sid] = session
        writer.write(wire.encode({"type": "admitted", "sid": sid, "ok": session is not None}))

    leader.links.add(writer)
    try:
        while (line := await wire.read_message(reader)) is not None:
            if problem := wire.link_problem(line):  # a proxy's bug: that line, not its link of many agents
                log.warning("ignored a line of a proxy's link: %s", problem)
                continue
            sid = line["sid"]
            if line["type"] == "open":
                task = asyncio.ensure_future(admit(sid, line["session"], line["hello"]))
                admitting.add(task)
                task.add_done_callback(admitting.discard)
            elif line["type"] == "agent" and sid in sessions:
                session = sessions[sid]
                try:  # the leader ends a session whose message it cannot read: this is for what it missed
                    leader.receive(session, line["message"])
                except Exception:  # one session's failure ends that session, not the link of many
                    log.exception("a message of the session of VM %s failed", session.vm_uuid)
                    LinkedAgent(writer, sid, sessions).hang_up()
                    leader.release(session)
            elif line["type"] == "end" and sid in sessions:
                leader.release(sessions.pop(sid))
    except (wire.Refusal, OSError, ssl.SSLError) as exc:
        log.info("a proxy's link ended: %s", exc)
    except Exception:  # the link's failure (a bug) must not go unnoticed
        log.exception("a proxy's link failed")
    finally:
        leader.links.discard(writer)
        for task in admitting:
            task.cancel()
        for session in sessions.values():
            leader.release(session)
        await wire.close(writer)
