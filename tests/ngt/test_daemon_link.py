"""A proxy in another instance than the leader: its agents' sessions travel over its one link to port 2073
(admitted, heartbeats acknowledged, console commands routed back, a second session refused across proxies)."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from ngt.daemon import commands
from tests.ngt import test_agent, test_daemon
from tests.ngt.test_daemon import raw_session, refusals, state
from tests.realparts import wait_for

pytestmark = pytest.mark.slow
mounted_vm = test_agent.mounted_vm  # the fixtures, shared
service = test_daemon.service


def exchange(lines, session, message: dict) -> dict:
    session.sendall(json.dumps(message).encode() + b"\n")
    return json.loads(lines.readline())


def test_a_session_through_another_instances_proxy(service, mounted_vm):
    vm, media = mounted_vm
    service("host-1", "leading:")
    _, address = service("host-2")
    wait_for(lambda: commands.leader_location(service.client), 10, "a leader")
    serial = json.loads((media / "config" / "ngt.json").read_text())["certificate_serial"]
    with raw_session(address, media) as session, session.makefile("rb") as lines:
        hello = {"id": "h1", "type": "hello", "vm_uuid": str(vm.uuid), "certificate_serial": serial}
        assert exchange(lines, session, hello) == {"id": "h1", "type": "welcome"}
        assert exchange(lines, session, {"id": "b1", "type": "heartbeat"}) == {"id": "b1", "type": "heartbeat_ack"}
        wait_for(lambda: state(vm).link_active, 10, "the link to be written")

        with raw_session(vm.cluster.virtual_ip, media) as second, second.makefile("rb") as second_lines:
            assert exchange(second_lines, second, hello)["type"] == "refused"  # the leader's own proxy
        wait_for(lambda: refusals("second concurrent session"), 10, "the refusal to be audited")

        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(commands.send_command, str(vm.uuid), "get_info", 10, service.client)
            command = json.loads(lines.readline())
            assert command["type"] == "get_info"
            session.sendall(json.dumps({"id": command["id"], "type": "reply", "ok": True,
                                        "hostname": "linked"}).encode() + b"\n")
            assert reply.result()["hostname"] == "linked"
    wait_for(lambda: not state(vm).link_active, 10, "the link to go inactive")
