"""The service's decisions, in process: a hello within a session (on serial a new certificate serial
follows a remount and is taken; one that names another VM, or on TLS another serial than the certificate
presented, ends the session), and the scan for channel sockets when the hypervisor fails for one VM."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from ngt.daemon import guest_state, leader


class RecordingAgent:
    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.hung_up = False

    def send(self, message: dict) -> None:
        self.sent.append(message)

    def hang_up(self) -> None:
        self.hung_up = True


def hello_again(transport: str, hello: dict, monkeypatch) -> tuple[leader.Session, RecordingAgent, list, bool]:
    """The leader's answer to `hello` on a session of VM "vm-a" with certificate "01"; the database calls it
    would make, recorded instead; whether the leader still holds the session."""
    calls = []
    monkeypatch.setattr(guest_state, "linked", lambda *args: calls.append(("linked", *args)))
    monkeypatch.setattr(guest_state, "record_refusal", lambda *args: calls.append(("refused", *args)))
    agent = RecordingAgent()
    session = leader.Session("vm-a", 1, "01", transport, agent)
    the_leader = leader.Leader(redis=None)
    the_leader.sessions["vm-a"] = session

    async def run() -> None:
        the_leader.hello_again(session, {"type": "hello", "id": "h2", **hello})
        await asyncio.sleep(0.1)  # the database calls go to a thread

    with ThreadPoolExecutor(1) as thread:  # a loop of its own: the browser tests' loop may run in this thread
        thread.submit(asyncio.run, run()).result()
    return session, agent, calls, the_leader.sessions.get("vm-a") is session


def test_on_serial_a_new_serial_is_taken_and_its_iso_released(monkeypatch):
    session, agent, calls, held = hello_again("serial", {"vm_uuid": "vm-a", "certificate_serial": "02"},
                                              monkeypatch)
    assert session.serial == "02" and calls == [("linked", "vm-a", "02")] and held
    assert agent.sent[-1]["type"] == "welcome" and not agent.hung_up


@pytest.mark.parametrize(("transport", "hello", "reason"), [
    ("serial", {"vm_uuid": "vm-b", "certificate_serial": "01"}, "hello names VM vm-b on a session of VM vm-a"),
    ("tls", {"vm_uuid": "vm-a", "certificate_serial": "02"}, "another certificate serial than the one presented"),
])
def test_a_hello_that_changes_who_speaks_ends_the_session(monkeypatch, transport, hello, reason):
    session, agent, calls, held = hello_again(transport, hello, monkeypatch)
    assert agent.sent[-1]["type"] == "refused" and reason in agent.sent[-1]["reason"] and agent.hung_up
    assert calls[0][0] == "refused" and reason in calls[0][2] and session.serial == "01"
    assert not held  # ended on the leader too, whichever proxy carried it


def test_one_domain_the_hypervisor_cannot_describe_hides_no_other_channel(monkeypatch):
    from types import SimpleNamespace

    from console.core.drivers import DriverError
    from ngt.daemon import instance

    vanished, running = SimpleNamespace(name="gone", uuid="vm-a"), SimpleNamespace(name="up", uuid="vm-b")

    class Driver:
        def agent_channel_path(self, vm):
            if vm is vanished:
                raise DriverError("domain not found")
            return f"/run/{vm.uuid}.sock"

    monkeypatch.setattr(guest_state, "running_vms", lambda host: [vanished, running])
    monkeypatch.setattr(instance, "driver_for", lambda vm: Driver())
    with ThreadPoolExecutor(1) as thread:
        found = thread.submit(asyncio.run, instance.Instance.channel_sockets(SimpleNamespace(host_name="h"))).result()
    assert found == [("vm-b", "/run/vm-b.sock")]
