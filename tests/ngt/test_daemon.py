"""The Guest Tools Service as real processes (`manage.py guest_tools_service`) with the real agent and a real
redis-server: link, state, ISO release, console commands, refusals while others are served, failover."""

import io
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command

from console.core.errors import Conflict
from console.core.models import AuditEvent, SimDomain
from console.core.tasks import sending
from console.models import VM
from console.services import processes, vms
from ngt.agent import AGENT_VERSION
from ngt.daemon import commands
from ngt.models import GuestTools
from ngt.services import guest_tools
from tests.ngt import test_agent
from tests.ngt.test_agent import REPOSITORY, free_vip, start_agent, stop
from tests.realparts import wait_for

pytestmark = pytest.mark.slow
mounted_vm = test_agent.mounted_vm  # the fixture, shared


@pytest.fixture
def service(celery_processes, redis_url, mounted_vm):
    """Start instances on loopback addresses of the test's own; the lease left by an earlier test is gone."""
    client = commands.redis_client(redis_url)
    client.delete(commands.LEASE_KEY)

    def start(host: str, ready: str = "listening on"):
        address = free_vip()
        command = processes.guest_tools_service_command(host) + f" --address {address}"
        process = celery_processes.start(f"service-{host}", command, ready)
        return process, address

    start.client = client
    yield start
    client.delete(commands.LEASE_KEY)


def state(vm) -> GuestTools:
    return GuestTools.objects.get(vm=vm)


def refusals(reason: str) -> int:
    return sum(reason in event.detail.get("reason", "") for event in AuditEvent.objects.filter(
        action="ngt.session.refused"))


def raw_session(vip: str, media: Path, tls: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
                certificate: tuple | None = ("client.pem", "client.key")):
    """A TLS session to the VIP as a hand-made agent: the ISO's certificate, another, or none."""
    context = ssl.create_default_context(cafile=media / "config" / "ca.pem")
    context.maximum_version = tls
    if certificate:
        context.load_cert_chain(*(media / "config" / name for name in certificate))
    return context.wrap_socket(socket.create_connection((vip, 2074), timeout=10), server_hostname=vip)


def handshake_refused(connect) -> bool:
    """The server ends the session at once (TLS 1.3 checks a client certificate after the handshake)."""
    try:
        with connect() as session:
            return session.recv(1) == b""
    except (ssl.SSLError, OSError):
        return True


def test_agent_links_over_tls_and_answers_the_console(service, mounted_vm, tmp_path, settings, redis_url):
    settings.REDIS_URL = redis_url
    vm, media = mounted_vm
    iso = Path(vm.cdroms.get(purpose="guest-tools").iso_path)
    _, address = service("host-1", "leading:")
    agent = start_agent(tmp_path, media)
    try:
        wait_for(lambda: state(vm).link_active, 20, "the link to be written")
        current = state(vm)
        assert current.installed_version == AGENT_VERSION and current.hostname == socket.gethostname()
        wait_for(lambda: not state(vm).iso_mounted and not iso.exists(), 10, "the ISO to be ejected and deleted")
        reply = commands.send_command(str(vm.uuid), "get_info", client=service.client)
        assert reply["ok"] and reply["hostname"] == socket.gethostname()
        assert commands.leader_location(service.client)["host"] == "host-1"
        printed = io.StringIO()
        call_command("nutanix_guest_tools_cli", "get_leader_location", stdout=printed)
        assert printed.getvalue().splitlines() == ["Leader host: host-1", f"Leader address: {address}"]
        last_seen = state(vm).last_seen
        wait_for(lambda: state(vm).last_seen > last_seen, 10, "heartbeats to move last_seen")
    finally:
        stop(agent)
    wait_for(lambda: not state(vm).link_active, 10, "the link to go inactive")


def test_refusals_leave_the_linked_agent_served(service, mounted_vm, tmp_path, actor, run_tasks):
    vm, media = mounted_vm
    vip = vm.cluster.virtual_ip
    service("host-1", "leading:")
    serial = json.loads((media / "config" / "ngt.json").read_text())["certificate_serial"]
    with raw_session(vip, media) as session:  # welcomed, then a flood: cut off
        hello = {"id": "h", "type": "hello", "vm_uuid": str(vm.uuid), "certificate_serial": serial}
        session.sendall(json.dumps(hello).encode() + b"\n" + b'{"id":"f","type":"heartbeat"}\n' * 1000)
        wait_for(lambda: refusals("flood"), 10, "the flood to be refused")
    agent = start_agent(tmp_path, media)
    try:
        wait_for(lambda: state(vm).link_active, 20, "the link")
        second = tmp_path / "second"
        second.mkdir()
        other = start_agent(second, media)
        wait_for(lambda: refusals("second concurrent session"), 15, "the second session to be refused")
        stop(other)
        assert handshake_refused(lambda: raw_session(vip, media, certificate=None))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", media / "config" / "self.key", "-out", media / "config" / "self.pem", "-days", "1",
                        "-subj", f"/CN={vm.uuid}"], check=True, capture_output=True)
        assert handshake_refused(lambda: raw_session(vip, media, certificate=("self.pem", "self.key")))
        assert handshake_refused(lambda: raw_session(vip, media, tls=ssl.TLSVersion.TLSv1_2))
        hello = {"id": "h", "type": "hello", "vm_uuid": str(uuid.uuid4()), "certificate_serial": "00"}
        for line, reason in ((json.dumps(hello).encode() + b"\n", "on a session of VM"),  # another VM's hello
                             (b"not json\n", "not JSON"), (b"x" * 70_000 + b"\n", "over 65536"),
                             (b'{"id":"f","type":"heartbeat"}\n', "not a hello")):
            with raw_session(vip, media) as session:
                session.sendall(line)
                time.sleep(0.5)
            wait_for(lambda reason=reason: refusals(reason), 10, f"{reason} to be refused")
        assert commands.send_command(str(vm.uuid), "get_info", timeout=10, client=service.client)["ok"]
        assert state(vm).link_active

        guest_tools.request_mount(actor, vm)  # the agent's certificate is revoked; a new session with it is refused
        run_tasks()
        third = tmp_path / "third"
        third.mkdir()
        stop(agent)
        wait_for(lambda: not state(vm).link_active, 10, "the first session to end")
        agent = start_agent(third, media)
        wait_for(lambda: refusals("is not the current certificate"), 15, "the revoked certificate to be refused")
    finally:
        stop(agent)


def test_failover_to_another_instance_within_15_s(service, celery_processes, mounted_vm, tmp_path):
    vm, media = mounted_vm
    leader, _ = service("host-1", "leading:")
    service("host-2")
    agent = start_agent(tmp_path, media)
    try:
        wait_for(lambda: state(vm).link_active, 20, "the link")
        celery_processes.kill(leader)
        started = time.monotonic()
        wait_for(lambda: (commands.leader_location(service.client) or {}).get("host") == "host-2", 15,
                 "host-2 to lead")
        wait_for(lambda: (commands.send_command(str(vm.uuid), "get_info", timeout=1, client=service.client)
                          or {}).get("ok"), 15 - (time.monotonic() - started), "the agent to come back")
    finally:
        stop(agent)
    assert json.loads(service.client.get(commands.LEASE_KEY))["host"] == "host-2"


@pytest.fixture
def short_data_dir(settings):
    """A data directory whose channel socket paths fit the 108 bytes a unix socket name may have."""
    directory = Path(tempfile.mkdtemp(prefix="facet-sg-"))
    settings.DATA_DIR = directory
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_sim_guest_links_over_a_pty_bridged_to_the_channel_socket(short_data_dir, service, celery_processes,
                                                                    mounted_vm):
    vm, _ = mounted_vm
    VM.objects.filter(pk=vm.pk).update(power_state=VM.PowerState.ON)
    service(vm.host.name, "leading:")
    celery_processes.start("sim-guest", f"{sys.executable} {REPOSITORY / 'manage.py'} sim_guest {vm.name} "
                           "--heartbeat 0.5", "on serial")
    wait_for(lambda: state(vm).link_active, 20, "the link over serial")
    reply = commands.send_command(str(vm.uuid), "get_info", timeout=10, client=service.client)
    assert reply["ok"] and reply["agent_version"] == AGENT_VERSION
    assert "connected over serial" in celery_processes.logs()
    assert not state(vm).iso_mounted  # linked with the mounted ISO's serial: ejected


def test_a_remount_on_a_running_vm_relinks_over_the_same_channel(short_data_dir, service, celery_processes,
                                                                  mounted_vm, actor, run_tasks):
    vm, _ = mounted_vm
    VM.objects.filter(pk=vm.pk).update(power_state=VM.PowerState.ON)
    service(vm.host.name, "leading:")
    celery_processes.start("sim-guest", f"{sys.executable} {REPOSITORY / 'manage.py'} sim_guest {vm.name} "
                           "--heartbeat 0.5 --scan 0.5", "on serial")
    wait_for(lambda: state(vm).link_active and not state(vm).iso_mounted, 20, "the link over serial")
    first = state(vm).certificate.serial

    guest_tools.request_mount(actor, vm)  # a new pair: the guest installs it and speaks with it on the same port
    run_tasks()
    second = state(vm).certificate.serial
    iso = Path(vm.cdroms.get(purpose="guest-tools").iso_path)
    assert second != first and iso.is_file()
    wait_for(lambda: not state(vm).iso_mounted, 30, "the new ISO to be released once the agent speaks with it")
    assert not iso.exists() and state(vm).link_active
    assert f"VM {vm.uuid} speaks with certificate {second}" in celery_processes.logs()


def test_serve_starts_one_instance_for_the_first_host_served(cluster):
    assert processes.guest_tools_service_host() == "host-1"
    assert processes.guest_tools_service_host(["host-2"]) == "host-2"
    assert processes.guest_tools_service_command("host-2").endswith("manage.py guest_tools_service --host host-2")


def test_guest_shutdown_succeeds_only_once_the_vm_is_off(service, mounted_vm, tmp_path, settings, redis_url, actor,
                                                         run_tasks, monkeypatch):
    """The agent's yes is not the end: the task follows the VM to off, and says why when it stays on."""
    vm, media = mounted_vm
    settings.REDIS_URL = redis_url
    settings.FACET_GUEST_SHUTDOWN_SECONDS = 2
    monkeypatch.setattr(sending, "send", lambda task: None)  # run_tasks runs it here, no worker needed
    # The VM runs: the sim hypervisor and the inventory both say so.
    SimDomain.objects.filter(uuid=vm.uuid).update(power_state="on")
    VM.objects.filter(pk=vm.pk).update(power_state=VM.PowerState.ON)
    with pytest.raises(Conflict, match="has no link"):
        guest_tools.request_guest_power(actor, vm, "guest-shutdown")
    service("host-1", "leading:")
    agent = start_agent(tmp_path, media)
    power_log = tmp_path / "power.log"
    try:
        wait_for(lambda: state(vm).link_active, 20, "the link")
        # The guest says yes and runs its shutdown command, but the VM stays on (a stuck guest).
        stuck = guest_tools.request_guest_power(actor, vm, "guest-shutdown")
        run_tasks()
        stuck.refresh_from_db()
        assert stuck.status == "failed"
        assert "accepted the shutdown but the VM is still on after 2 s" in stuck.error
        assert power_log.read_text() == "shutdown\n"

        # This time the guest powers off once its command ran, as a real one does.
        def guest_powers_off() -> None:
            wait_for(lambda: power_log.read_text().count("shutdown") == 2, 10, "the second shutdown command")
            SimDomain.objects.filter(uuid=vm.uuid).update(power_state="off")

        settings.FACET_GUEST_SHUTDOWN_SECONDS = 20
        guest = threading.Thread(target=guest_powers_off)
        guest.start()
        task = guest_tools.request_guest_power(actor, vm, "guest-shutdown")
        run_tasks()
        guest.join()
        task.refresh_from_db()
        assert task.status == "succeeded", task.error
        assert task.message == f"{vm.name} is off: its guest shut down"
        assert VM.objects.get(pk=vm.pk).power_state == "off"
    finally:
        stop(agent)


def test_a_clone_talks_as_itself_once_its_iso_is_mounted(service, mounted_vm, tmp_path, actor, run_tasks):
    """The clone boots with the template's installed configuration: refused, since a template never runs;
    its own ISO then wins over the installed copy and it links as itself."""
    template, media = mounted_vm
    service("host-1", "leading:")
    VM.objects.filter(pk=template.pk).update(is_template=True)
    agent = start_agent(tmp_path, media)  # installs the template's configuration, as the .deb on the image had it
    try:
        wait_for(lambda: refusals("is a template"), 15, "the template's certificate to be refused")
        stop(agent)
        vms.request_clone(actor, VM.objects.get(pk=template.pk), "web-2")
        run_tasks()
        clone = VM.objects.get(name="web-2")
        guest_tools.request_mount(actor, clone)
        run_tasks()
        agent = start_agent(tmp_path, test_agent.extract_media(clone, tmp_path / "clone-media"))
        wait_for(lambda: state(clone).link_active, 20, "the clone to link as itself")
        assert json.loads((tmp_path / "etc" / "ngt.json").read_text())["vm_uuid"] == str(clone.uuid)
        assert not state(template).link_active
    finally:
        stop(agent)
