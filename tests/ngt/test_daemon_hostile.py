"""Hostile and revoked guests against the Guest Tools Service: a message the service cannot read ends that
agent's session and no other (in the leader, and across a proxy's link to it); a revoked certificate's live
session is hung up within one flush and gets no more commands; the TLS ports turn away connections over
their limits and cut off slow handshakes."""

import asyncio
import json
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis.asyncio as aioredis
from hypothesis import example, given, settings
from hypothesis import strategies as st

from console.core.models import AuditEvent
from console.models import VM
from console.services import vms
from ngt.daemon import commands, gate, guest_state, leader, wire
from ngt.daemon.certificates import server_identity
from ngt.services import authority, guest_tools
from tests.ngt import test_agent, test_daemon
from tests.ngt.test_agent import free_vip
from tests.ngt.test_daemon import raw_session, refusals, state
from tests.ngt.test_daemon_hello import RecordingAgent
from tests.ngt.test_daemon_state import run_with_leader
from tests.realparts import run_coroutine, wait_for

mounted_vm = test_agent.mounted_vm  # the fixtures, shared
service = test_daemon.service


def in_own_loop(coroutine_function) -> None:
    with ThreadPoolExecutor(1) as thread:  # a loop of its own: the browser tests' loop may run in this thread
        thread.submit(asyncio.run, coroutine_function()).result()


# A message the service cannot read.

MALFORMED = [
    ({"id": ["r1"], "type": "reply", "ok": True}, "'id' is not a string"),  # was: unhashable, the link failed
    ({"id": "r1", "type": "reply", "ok": "yes"}, "'ok' is not true or false"),
    ({"id": "h2", "type": "hello", "vm_uuid": "vm-a", "ip_addresses": 5}, "'ip_addresses' is not a list"),
    ({"id": "h2", "type": "hello", "vm_uuid": "vm-a", "ip_addresses": [{"a": 1}]}, "'ip_addresses' is not a list"),
    ({"id": "h2", "type": "hello", "vm_uuid": ["vm-a"]}, "'vm_uuid' is not a string"),
]


@pytest.mark.parametrize(("message", "reason"), MALFORMED)
def test_a_message_the_leader_cannot_read_ends_only_its_session(monkeypatch, message, reason):
    recorded = []
    monkeypatch.setattr(guest_state, "record_refusal", lambda *args: recorded.append(args))
    offender, bystander = RecordingAgent(), RecordingAgent()

    async def run() -> None:
        the_leader = leader.Leader(redis=None)
        for vm_uuid, vm_id, agent in (("vm-a", 1, offender), ("vm-b", 2, bystander)):
            the_leader.sessions[vm_uuid] = leader.Session(vm_uuid, vm_id, "01", "serial", agent)
        the_leader.receive(the_leader.sessions["vm-a"], message)
        the_leader.receive(the_leader.sessions["vm-b"], {"id": "b1", "type": "heartbeat"})
        await asyncio.sleep(0.1)  # the refusal's record goes to a thread
        assert list(the_leader.sessions) == ["vm-b"]

    in_own_loop(run)
    assert offender.sent[-1]["type"] == "refused" and reason in offender.sent[-1]["reason"] and offender.hung_up
    assert recorded[0][0] == "vm-a" and reason in recorded[0][1]
    assert bystander.sent == [{"id": "b1", "type": "heartbeat_ack"}] and not bystander.hung_up


def test_a_hello_the_leader_cannot_read_is_refused(monkeypatch):
    monkeypatch.setattr(guest_state, "record_refusal", lambda *args: None)
    agent = RecordingAgent()
    hello = {"id": "h1", "type": "hello", "vm_uuid": "vm-a", "ip_addresses": "10.0.0.1"}

    async def run() -> None:
        assert await leader.Leader(redis=None).admit({"vm_uuid": "vm-a", "transport": "serial"}, hello, agent) is None

    in_own_loop(run)
    reason = "a hello whose 'ip_addresses' is not a list of strings"
    assert agent.sent == [{"id": "l0", "type": "refused", "reason": reason}]


def exchange(lines, session, message: dict) -> dict:
    session.sendall(json.dumps(message).encode() + b"\n")
    return json.loads(lines.readline())


def tls_hello(vm, media) -> dict:
    serial = json.loads((media / "config" / "ngt.json").read_text())["certificate_serial"]
    return {"id": "h1", "type": "hello", "vm_uuid": str(vm.uuid), "certificate_serial": serial}


@pytest.mark.slow
def test_a_malformed_message_through_a_proxys_link_ends_only_its_session(service, mounted_vm, actor, run_tasks,
                                                                         tmp_path):
    """Two agents behind one proxy (host-2) whose leader runs in host-1: one sends a reply whose id is a
    list (the leader failed on it, and the whole link with it); the other stays linked and answered."""
    first, first_media = mounted_vm
    vms.request_create_vm(actor, vms.VMSpec(name="web-2", vcpus=1, memory_bytes=2**30))
    run_tasks()
    second = VM.objects.get(name="web-2")
    guest_tools.request_mount(actor, second)
    run_tasks()
    second_media = test_agent.extract_media(second, tmp_path / "media-2")
    service("host-1", "leading:")
    _, address = service("host-2")
    wait_for(lambda: commands.leader_location(service.client), 10, "a leader")
    with raw_session(address, first_media) as bad, bad.makefile("rb") as bad_lines, \
            raw_session(address, second_media) as good, good.makefile("rb") as good_lines:
        assert exchange(bad_lines, bad, tls_hello(first, first_media))["type"] == "welcome"
        assert exchange(good_lines, good, tls_hello(second, second_media))["type"] == "welcome"
        bad.sendall(b'{"id": ["x"], "type": "reply", "ok": true}\n')
        assert "'id' is not a string" in json.loads(bad_lines.readline())["reason"]
        assert exchange(good_lines, good, {"id": "b1", "type": "heartbeat"})["type"] == "heartbeat_ack"
        wait_for(lambda: state(second).link_active and not state(first).link_active, 10, "the links to be written")
    wait_for(lambda: refusals("'id' is not a string"), 10, "the refusal to be audited")


# A revoked certificate.

def tls_opening(vm, serial: str) -> dict:
    return {"vm_uuid": str(vm.uuid), "transport": "tls", "peer_serial": serial, "peer": "127.0.0.1", "proxy": "h"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("revocation", ["disable", "remount"])
def test_a_revoked_certificates_session_is_hung_up_within_a_flush(vm, actor, run_tasks, redis_url, monkeypatch,
                                                                   revocation):
    guest_tools.request_mount(actor, vm)
    run_tasks()
    serial = state(vm).certificate.serial
    agent = RecordingAgent()
    hello = {"id": "h1", "type": "hello", "vm_uuid": str(vm.uuid), "certificate_serial": serial}

    def revoke() -> None:
        (guest_tools.request_disable if revocation == "disable" else guest_tools.request_mount)(actor, vm)
        run_tasks()

    async def scenario(the_leader) -> None:
        the_leader.redis = aioredis.from_url(redis_url, decode_responses=True)
        assert await the_leader.admit(tls_opening(vm, serial), hello, agent) is not None
        await asyncio.sleep(0.2)  # flushes pass: the current certificate's session stays
        assert not agent.hung_up
        await asyncio.to_thread(revoke)
        revoked_at = time.monotonic()
        while not agent.hung_up and time.monotonic() - revoked_at < 5:
            await asyncio.sleep(0.01)
        assert time.monotonic() - revoked_at < 0.05 * 2 + 0.5  # one flush interval and its queries
        await the_leader.route({"id": "c1", "vm_uuid": str(vm.uuid), "type": "get_info"})
        answer = json.loads(await the_leader.redis.lpop(commands.REPLY_PREFIX + "c1"))
        assert answer == {"ok": False, "error": "the agent of this VM has no link"}
        await the_leader.redis.aclose()

    run_with_leader(scenario, monkeypatch)
    assert agent.hung_up and agent.sent[-1]["type"] == "refused"
    assert f"certificate {serial} is no longer the current certificate" in agent.sent[-1]["reason"]
    assert not any(message["type"] == "get_info" for message in agent.sent)
    assert not state(vm).link_active
    assert AuditEvent.objects.filter(action="ngt.session.refused", detail__reason__icontains=serial).exists()


@pytest.mark.django_db(transaction=True)
def test_stale_serials_are_revoked_and_unknown_ones(vm, actor, run_tasks):
    guest_tools.request_mount(actor, vm)
    run_tasks()
    first = state(vm).certificate.serial
    guest_tools.request_mount(actor, vm)
    run_tasks()
    current = state(vm).certificate.serial
    assert guest_state.stale_serials([first, current, "00ff"]) == [first, "00ff"]
    assert guest_state.stale_serials([]) == []


# The TLS ports' limits.

def tls_server_context(tmp_path, cluster) -> ssl.SSLContext:
    identity = server_identity(authority.open_authority(authority.authority_for(cluster)), "host-1", ["127.0.0.1"])
    (tmp_path / "server.pem").write_bytes(identity.certificate_pem)
    (tmp_path / "server.key").write_bytes(identity.key_pem)
    (tmp_path / "ca.pem").write_bytes(identity.ca_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    return context


def closed_within(connection: socket.socket, seconds: float) -> bool:
    connection.settimeout(seconds)
    try:
        return connection.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset: closed too
        return True


def test_the_gate_turns_away_handshakes_over_its_limits_and_cuts_off_slow_ones(tmp_path, cluster):
    """Real sockets on loopback: silent connections (no TLS ClientHello) from one address fill its share of
    handshakes; one more is closed at once, one from another address is still let in; the silent ones are
    cut off after the handshake timeout, and then a real TLS client is served."""
    context, address = tls_server_context(tmp_path, cluster), free_vip()
    door = gate.ConnectionGate(most_connections=6, most_handshakes=4, most_per_address=3, handshake_timeout=1.0)
    served = []

    async def serve(reader, writer) -> None:
        served.append(writer.get_extra_info("peername")[0])
        writer.write(b"hi\n")
        await writer.drain()
        writer.close()

    def client(source: str) -> socket.socket:
        connection = socket.create_connection((address, port), timeout=5, source_address=(source, 0))
        time.sleep(0.05)  # accepted and counted before the next
        return connection

    async def run() -> None:
        nonlocal port
        server = await asyncio.start_server(door.listener(context, serve), address, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await asyncio.to_thread(check)
        finally:
            server.close()

    def check() -> None:
        silent = [client("127.0.0.1") for _ in range(3)]
        extra = client("127.0.0.1")
        assert closed_within(extra, 0.5)  # over the per-address limit: closed at once
        other = client("127.0.0.2")
        assert not closed_within(other, 0.3)  # another address still gets a handshake
        assert closed_within(client("127.0.0.3"), 0.5)  # 4 handshakes in progress: the total is reached
        started = time.monotonic()
        assert all(closed_within(connection, 3) for connection in [*silent, other])
        assert time.monotonic() - started < 2.5  # the 1 s handshake timeout, not asyncio's 60 s
        client_context = ssl.create_default_context(cafile=tmp_path / "ca.pem")
        with client_context.wrap_socket(socket.create_connection((address, port), timeout=5),
                                        server_hostname="127.0.0.1") as tls:
            assert tls.recv(3) == b"hi\n"
        for connection in [*silent, extra, other]:
            connection.close()

    port = 0
    in_own_loop(run)
    assert len(served) == 1 and door.open == 0 and not door.handshaking


@pytest.mark.slow
def test_the_services_agent_port_turns_away_and_times_out_silent_connections(service, mounted_vm, tmp_path,
                                                                             monkeypatch):
    """The real service with small limits: silent connections over the per-address limit are closed at once,
    the others after the handshake timeout; the real agent links all the same."""
    monkeypatch.setenv("FACET_GUEST_TOOLS_MAX_HANDSHAKES_PER_ADDRESS", "4")
    monkeypatch.setenv("FACET_GUEST_TOOLS_HANDSHAKE_TIMEOUT", "1")
    vm, media = mounted_vm
    _, address = service("host-1", "leading:")
    silent = [socket.create_connection((address, 2074), timeout=5) for _ in range(4)]
    time.sleep(0.3)
    extra = socket.create_connection((address, 2074), timeout=5)
    assert closed_within(extra, 1)
    assert all(closed_within(connection, 3) for connection in silent)
    agent = test_agent.start_agent(tmp_path, media)
    try:
        wait_for(lambda: state(vm).link_active, 20, "the link")
    finally:
        test_agent.stop(agent)
        for connection in [*silent, extra]:
            connection.close()


def test_an_agents_line_is_checked_where_it_enters():
    assert wire.check_agent_message({"id": "a1", "type": "hello", "ip_addresses": ["10.0.0.1"]})
    with pytest.raises(wire.Refusal, match="not JSON"):
        wire.decode(b"[" * 50_000 + b"\n")  # nested deeper than the parser recurses: was a RecursionError


# Any bytes and any JSON from an agent or a link (hypothesis).

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                           lambda children: st.lists(children) | st.dictionaries(st.text(), children),
                           max_leaves=20)
agent_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["hello", "heartbeat", "reply", "status"]) | st.text()},
    optional={"id": json_values, "vm_uuid": json_values, "certificate_serial": json_values, "os": json_values,
              "hostname": json_values, "agent_version": json_values, "ok": json_values,
              "ip_addresses": json_values | st.lists(json_values), "capabilities": json_values})


async def read_all(data: bytes) -> list:
    """Every message `read_message` makes of `data` as a stream, until its end or a Refusal."""
    reader = asyncio.StreamReader(limit=wire.MAX_LINE)
    reader.feed_data(data)
    reader.feed_eof()
    read = []
    try:
        while (message := await wire.read_message(reader)) is not None:
            read.append(message)
    except wire.Refusal:
        pass
    return read


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=wire.MAX_LINE + 10) | st.lists(agent_messages, max_size=5).map(
    lambda messages: b"".join(wire.encode(message) for message in messages)))
@example(b"[" * 60_000 + b"\n")
@example(b'{"type": "hello"}' + b" " * wire.MAX_LINE + b"\n")
@example(b'{"type": "x"}\n\xff\xfe\n')
def test_any_bytes_from_an_agent_are_messages_or_a_clean_refusal(data):
    for message in run_coroutine(read_all(data)):
        assert isinstance(message, dict) and isinstance(message["type"], str)


@settings(max_examples=500, deadline=None)
@given(agent_messages)
def test_any_message_the_check_lets_through_the_leader_reads_without_failing(message):
    """What `check_agent_message` lets through, the leader handles (welcome, ack, reply, ignore); what it
    does not is a Refusal, never another exception."""
    try:
        wire.check_agent_message(message)
    except wire.Refusal:
        return
    if message["type"] == "hello":  # a hello again within the session, as its VM and certificate
        message = {**message, "vm_uuid": "vm-a", "certificate_serial": "01"}
    agent = RecordingAgent()

    async def run() -> None:
        the_leader = leader.Leader(redis=None)
        session = the_leader.sessions["vm-a"] = leader.Session("vm-a", 1, "01", "serial", agent)
        the_leader.receive(session, message)
        assert the_leader.sessions.get("vm-a") is session

    run_coroutine(run())
    assert not agent.hung_up and all(answer["type"] != "refused" for answer in agent.sent)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"type": st.sampled_from(["open", "agent", "admitted", "end"]) | st.text()},
                             optional={"sid": json_values, "session": json_values, "hello": json_values,
                                       "message": json_values, "ok": json_values}))
def test_any_link_line_is_read_or_named_for_what_is_wrong(line):
    problem = wire.link_problem(line)
    if not problem:
        assert type(line["sid"]) is int and line["type"] in wire.LINK_FIELDS
