"""Guest state as the console shows it after the leader's batches: a hello's facts appear within a flush, a
burst of hellos all land (each VM with its own facts), refused hellos write nothing, heartbeats move
last_seen and a lost link shows inactive. The batches are a few statements on SQLite and PostgreSQL alike."""

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console.core.models import AuditEvent
from console.models import VM
from ngt.daemon import guest_state, leader
from ngt.models import GuestTools, VMCertificate
from tests.ngt.test_daemon_hello import RecordingAgent

pytestmark = pytest.mark.django_db(transaction=True)  # the service's threads use connections of their own


def guest_vms(cluster, count: int, **fields) -> list[VM]:
    """`count` VMs with Guest Tools enabled and nothing heard from their agents yet."""
    host = cluster.hosts.first()
    made = VM.objects.bulk_create([VM(cluster=cluster, host=host, name=f"guest-{n}", hostname=f"guest-{n}",
                                      vcpus=1, memory_bytes=2**30, power_state="on", **fields)
                                   for n in range(count)])
    GuestTools.objects.bulk_create([GuestTools(vm=vm, enabled=True) for vm in made])
    return list(VM.objects.filter(name__startswith="guest-").order_by("name"))


def hello(vm: VM, **facts) -> dict:
    return {"id": "h1", "type": "hello", "vm_uuid": str(vm.uuid), "certificate_serial": "", "agent_version": "1.0.0",
            "os": "Debian 12", "hostname": f"{vm.name}.example", "ip_addresses": ["10.0.0.5", "fe80::1"], **facts}


def serial_opening(vm: VM) -> dict:
    return {"vm_uuid": str(vm.uuid), "transport": "serial", "peer": "serial channel", "proxy": "host-1"}


def run_with_leader(scenario, monkeypatch, flush_interval: float = 0.05) -> None:
    """`scenario(leader)` on a started leader whose batches are `flush_interval` apart, then one batch more."""
    monkeypatch.setattr(leader, "FLUSH_INTERVAL", flush_interval)

    async def run() -> None:
        the_leader = leader.Leader(redis=None)
        flushing = asyncio.ensure_future(the_leader.flush_forever())
        await scenario(the_leader)
        await asyncio.sleep(flush_interval * 2 + 0.5)  # the batch after the last hello, and its write
        flushing.cancel()

    with ThreadPoolExecutor(1) as thread:  # a loop of its own: the browser tests' loop may run in this thread
        thread.submit(asyncio.run, run()).result()


def test_a_hellos_facts_appear_after_one_flush(cluster, monkeypatch):
    vm, = guest_vms(cluster, 1)
    before = timezone.now()
    agent = RecordingAgent()

    async def scenario(the_leader):
        assert await the_leader.admit(serial_opening(vm), hello(vm), agent) is not None

    run_with_leader(scenario, monkeypatch)
    shown = GuestTools.objects.get(vm=vm)
    assert agent.sent == [{"id": "h1", "type": "welcome"}]
    assert shown.link_active and shown.last_seen >= before and shown.status == "link active"
    assert (shown.installed_version, shown.guest_os, shown.hostname, shown.ip_addresses) == (
        "1.0.0", "Debian 12", "guest-0.example", ["10.0.0.5", "fe80::1"])


def test_a_burst_of_hellos_all_land_each_with_its_own_facts(cluster, monkeypatch):
    guests = guest_vms(cluster, 300)
    agents = [RecordingAgent() for _ in guests]

    async def scenario(the_leader):
        await asyncio.gather(*(the_leader.admit(serial_opening(vm), hello(vm, os=f"os of {vm.name}"), agent)
                               for vm, agent in zip(guests, agents, strict=True)))

    run_with_leader(scenario, monkeypatch)
    assert all(agent.sent[-1]["type"] == "welcome" for agent in agents)
    shown = {row.vm_id: row for row in GuestTools.objects.all()}
    assert all(shown[vm.pk].link_active and shown[vm.pk].hostname == f"{vm.name}.example"
               and shown[vm.pk].guest_os == f"os of {vm.name}" for vm in guests)


def test_refused_hellos_write_nothing(cluster, monkeypatch):
    linked, template, other = guest_vms(cluster, 3)
    VM.objects.filter(pk=template.pk).update(is_template=True)
    untouched = {row.vm_id: row.updated_at for row in GuestTools.objects.all()}
    agents, unknown = [RecordingAgent() for _ in range(5)], str(uuid.uuid4())

    async def scenario(the_leader):
        await the_leader.admit(serial_opening(linked), hello(linked), RecordingAgent())
        untouched.pop(linked.pk)
        refused = [(serial_opening(template), hello(template)),  # a template
                   (serial_opening(linked), hello(linked)),  # a second concurrent session
                   (serial_opening(other), {**hello(other), "type": "heartbeat"}),  # not a hello first
                   (serial_opening(other), hello(linked)),  # another VM's hello
                   ({**serial_opening(other), "vm_uuid": unknown}, {**hello(other), "vm_uuid": unknown})]
        for (opening, message), agent in zip(refused, agents, strict=True):
            assert await the_leader.admit(opening, message, agent) is None

    run_with_leader(scenario, monkeypatch)
    assert all(agent.sent[-1]["type"] == "refused" for agent in agents)
    assert {row.vm_id: row.updated_at for row in GuestTools.objects.exclude(vm=linked)} == untouched
    assert not GuestTools.objects.exclude(vm=linked).filter(link_active=True).exists()
    assert AuditEvent.objects.filter(action="ngt.session.refused").count() == 5


def test_a_batch_writes_heartbeats_facts_and_lost_links_in_a_few_statements(cluster):
    heard_only, hello_and_heard, lost, hello_then_lost = guest_vms(cluster, 4)
    GuestTools.objects.update(link_active=True)
    before = timezone.now()
    facts = {"link_active": True, "installed_version": "1.0.1", "guest_os": "Ubuntu", "hostname": "web.example",
             "ip_addresses": ["10.0.0.7"]}

    with CaptureQueriesContext(connection) as queries:
        guest_state.write_batch({heard_only.pk, hello_and_heard.pk, hello_then_lost.pk},
                                {hello_and_heard.pk: facts, lost.pk: {"link_active": False},
                                 hello_then_lost.pk: {**facts, "link_active": False}})

    shown = {row.vm_id: row for row in GuestTools.objects.all()}
    assert shown[heard_only.pk].last_seen >= before and shown[heard_only.pk].link_active
    assert shown[hello_and_heard.pk].last_seen >= before and shown[hello_and_heard.pk].link_active
    assert (shown[hello_and_heard.pk].hostname, shown[hello_and_heard.pk].ip_addresses) == ("web.example",
                                                                                         ["10.0.0.7"])
    assert shown[lost.pk].last_seen is None and not shown[lost.pk].link_active and not shown[lost.pk].hostname
    assert shown[hello_then_lost.pk].guest_os == "Ubuntu" and not shown[hello_then_lost.pk].link_active
    updates = [query for query in queries if query["sql"].startswith("UPDATE")]
    assert len(updates) == 3  # last_seen, the hellos' facts, the lost links: whatever the number of VMs


def test_identities_checked_together_answer_each_hello_as_alone(cluster):
    current, revoked, template, on_serial = guest_vms(cluster, 4)
    VM.objects.filter(pk=template.pk).update(is_template=True)
    now = timezone.now()
    for vm, serial, is_revoked in ((current, "0a", False), (revoked, "0b", True), (template, "0c", False)):
        VMCertificate.objects.create(vm=vm, serial=serial, certificate_pem="-", not_before=now, not_after=now,
                                     revoked=is_revoked)
    request = guest_state.IdentityRequest
    identities = guest_state.check_identities([
        request(str(current.uuid).upper(), "0a", "tls"), request(str(current.uuid), "0b", "tls"),
        request(str(revoked.uuid), "0b", "tls"), request(str(template.uuid), "0c", "tls"),
        request(str(on_serial.uuid), "", "serial"), request(str(on_serial.uuid), "", "tls"),
        request(str(uuid.uuid4()), "", "serial"), request("not-a-uuid", "", "serial")])

    assert [identity.problem for identity in identities] == [
        "", "certificate 0b is not the current certificate of VM guest-0",
        "certificate 0b is not the current certificate of VM guest-1", "guest-2 is a template",
        "", "certificate  is not the current certificate of VM guest-3",
        identities[6].problem, "no VM not-a-uuid"]
    assert identities[6].problem.startswith("no VM ")
    assert (identities[0].vm_id, identities[4].vm_id) == (current.pk, on_serial.pk)


def test_a_hello_with_a_nul_character_lands_without_it(cluster, monkeypatch):
    vm, = guest_vms(cluster, 1)

    async def scenario(the_leader):
        await the_leader.admit(serial_opening(vm), hello(vm, hostname="web\x00-1", os="Linux\x00"), RecordingAgent())

    run_with_leader(scenario, monkeypatch)
    shown = GuestTools.objects.get(vm=vm)
    assert (shown.hostname, shown.guest_os, shown.link_active) == ("web-1", "Linux", True)
