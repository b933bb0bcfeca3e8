"""Bulk deployment from a golden template on real QEMU (`qemu:///system`, TCG here), as an administrator does
it (issue 13's proof), with a real Celery worker for every task and a real Guest Tools Service for the host:

1. A Debian VM (tests/guest_image.py) is created with the full tools ISO and a #cloud-config that installs
   the agent from it; it links over its serial channel, and the agent relays cloud-init's result.
2. The guest shuts itself down (Guest Tools), and the VM is made a template: its certificate is revoked.
3. Through the API: a bulk clone of 3 linked clones with hostnames from a CSV, a #cloud-config that writes a
   file, a fresh Guest Tools identity each and power-on; and a fourth clone whose runcmd exits 1.
4. Each clone links over its own serial channel (the clones have no NIC) with its own new certificate, says
   the CSV's hostname in its hello, and its agent relays cloud-init's result: `succeeded`, and `failed` with
   cloud-init's own error for the fourth; both ISOs are then ejected from the running domain and deleted.
   The template's certificate, presented over TLS, is refused.

Per clone, the seconds from power-on to link and to customization done are printed (run with -s) and
written to test-output/integration/bulk-deploy-times.txt. Under TCG on two cores the template takes about
two minutes and the four clones, booting together, two to four more; the waits are bounded and generous, and
a failure prints the guests' serial consoles."""

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from defusedxml.ElementTree import fromstring

from console.core.drivers import get_driver
from console.core.drivers.libvirt import CONSOLE_LOG_DIR
from console.core.models import AuditEvent, Task
from console.models import VM, Host
from console.services import power, processes, templates, vms
from customization.models import VMCustomization
from customization.services.lifecycle import CustomizationRequest
from ngt.daemon import commands
from ngt.models import GuestTools, VMCertificate
from ngt.services import guest_tools
from tests.browser import OUTPUT
from tests.guest_image import ensure_guest_image
from tests.integration.conftest import cluster_image, domain_name, serial_console
from tests.ngt import conftest as ngt_fixtures
from tests.ngt.test_agent import extract_media, free_vip
from tests.ngt.test_daemon import raw_session
from tests.realparts import wait_for

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
pytestmark = pytest.mark.slow
# The Guest Tools tests' fixtures, shared: the agent's packages for the ISO, and a CA key file of our own.
built_packages, guest_tools_packages = ngt_fixtures.built_packages, ngt_fixtures.guest_tools_packages
ca_key_file = ngt_fixtures.ca_key_file
GiB = 1024**3
TASK_SECONDS = 180
TEMPLATE_SECONDS = 600  # boot, install the agent, link, cloud-init's end relayed
SHUTDOWN_SECONDS = 180
CLONES_SECONDS = 720  # four guests booting at once on two shared cores
MEDIA_SECONDS = 90
TIMES_FILE = OUTPUT / "integration" / "bulk-deploy-times.txt"

# Each cloud-config sets the locale to C.UTF-8, which glibc always has: the test image is minbase without the
# `locales` package, and cloud-init's default (en_US.UTF-8) would fail its locale module at every first boot.
# The golden image's own customization: the agent, installed from the full tools ISO (and on disk for good).
TEMPLATE_CONFIG = """\
#cloud-config
locale: C.UTF-8
runcmd:
  - mount -o ro LABEL=FACET_TOOLS /mnt
  - sh /mnt/installer/linux/install.sh
  - umount /mnt
  - sync
"""
# Each clone's: a file written by cloud-init, read back on the serial console with the hostname.
CLONE_CONFIG = """\
#cloud-config
locale: C.UTF-8
write_files:
  - path: /etc/facet-journey
    content: written by cloud-init
runcmd:
  - [sh, -c, 'echo "FACET-JOURNEY $(hostname) $(cat /etc/facet-journey)" > /dev/ttyS0']
"""
FAILING_CONFIG = """\
#cloud-config
locale: C.UTF-8
runcmd:
  - [sh, -c, "echo this step fails; exit 1"]
"""
HOSTNAMES = ["alpha-web", "bravo-web", "charlie-web"]


def ended(task: Task, seconds: float) -> Task:
    wait_for(lambda: Task.objects.get(pk=task.pk).ended, seconds, f"{task.kind} of {task.entity_name} to end",
             interval=0.5)
    task.refresh_from_db()
    assert task.status == Task.Status.SUCCEEDED, f"{task.kind}: {task.error}"
    return task


def accepted(response) -> Task:
    assert response.status_code == 202, response.content
    return Task.objects.get(uuid=response.json()["uuid"])


def tools(vm: VM) -> GuestTools:
    return GuestTools.objects.select_related("certificate").get(vm=vm)


def customization(vm: VM) -> VMCustomization:
    return VMCustomization.objects.get(vm=vm)


def media_paths(vm: VM) -> dict[str, Path]:
    """The ISOs in the VM's CD-ROMs, by purpose."""
    return {cdrom.purpose: Path(cdrom.iso_path) for cdrom in vm.cdroms.exclude(iso_path="")}


def domain_media(vm: VM) -> set[str]:
    """What the running domain's drives hold."""
    domain = libvirt.open(vm.host.driver_uri).lookupByUUIDString(str(vm.uuid))
    return {source.get("file") for source in fromstring(domain.XMLDesc(0)).iterfind("devices/disk/source")}


def media_gone(vm: VM, paths: dict[str, Path]) -> bool:
    return (not customization(vm).iso_path and not tools(vm).iso_mounted
            and not any(path.exists() for path in paths.values())
            and not domain_media(vm) & {str(path) for path in paths.values()})


def released_serial(vm: VM) -> str | None:
    """The serial the agent linked with, as the service recorded when it released the tools ISO."""
    event = AuditEvent.objects.filter(action="ngt.iso.release", entity_uuid=vm.uuid).order_by("time").first()
    return event.detail.get("serial") if event else None


def linked_at(vm: VM) -> datetime | None:
    event = AuditEvent.objects.filter(action="ngt.iso.release", entity_uuid=vm.uuid).order_by("time").first()
    return event.time if event else None


def refused_hello(vip: str, media: Path) -> dict:
    """Present the template's certificate over TLS as an agent would, with a hello naming the template:
    the service's answer."""
    config = json.loads((media / "config" / "ngt.json").read_text())
    hello = {"id": "h1", "type": "hello", "vm_uuid": config["vm_uuid"],
             "certificate_serial": config["certificate_serial"], "agent_version": "1", "capabilities": [],
             "os": "Debian", "hostname": "golden", "ip_addresses": []}
    with raw_session(vip, media) as session:
        session.sendall(json.dumps(hello).encode() + b"\n")
        received = b""
        while b"\n" not in received:
            chunk = session.recv(4096)
            if not chunk:
                break
            received += chunk
    return json.loads(received.split(b"\n")[0]) if received.strip() else {"type": "closed"}


def times_table(rows: list[tuple[str, str, float, float, str]]) -> str:
    width = max(len(text) for row in rows for text in row[:2]) + 2
    lines = [f"{'clone':<{width}}{'hostname':<{width}}{'power-on to link':>17} {'to customization done':>22}  result"]
    lines += [f"{name:<{width}}{hostname:<{width}}{link:>16.0f}s {done:>21.0f}s  {result}"
              for name, hostname, link, done, result in rows]
    return "\n".join(lines)


def test_a_template_with_guest_tools_bulk_clones_into_linked_customized_vms(
        qemu_cluster, guest_tools_packages, celery_processes, redis_url, settings, actor, api, tmp_path):
    began = time.monotonic()
    settings.REDIS_URL = redis_url
    qemu_cluster.virtual_ip = free_vip()  # the agents' TLS port (2074) on an address of this test's own
    qemu_cluster.save()
    host = Host.objects.get(cluster=qemu_cluster)
    driver = get_driver(host.driver_uri)
    image = cluster_image(qemu_cluster, ensure_guest_image(), "debian-12")
    commands.redis_client(redis_url).delete(commands.LEASE_KEY)  # a lease an earlier test left in this Redis
    celery_processes.worker()
    celery_processes.start("service-qemu-1", processes.guest_tools_service_command(host.name)
                           + f" --address {free_vip()}", "leading:")
    watched: list[VM] = []
    try:
        # 1. The golden VM: the agent installed from its tools ISO, linked, cloud-init's result relayed.
        spec = vms.VMSpec(name=domain_name("golden"), vcpus=1, memory_bytes=GiB, image=image, options={
            "customization": CustomizationRequest(content=TEMPLATE_CONFIG), "guest_tools": {"mount": True}})
        golden = VM.objects.select_related("host").get(
            uuid=ended(vms.request_create_vm(actor, spec), TASK_SECONDS).entity_uuid)
        watched.append(golden)
        # The template's identity as its tools ISO carried it, kept to present once it is a template.
        golden_media = extract_media(golden, tmp_path / "golden-media")
        golden_serial = tools(golden).certificate.serial
        ended(power.request_power(actor, golden, "power-on"), TASK_SECONDS)
        wait_for(lambda: tools(golden).link_active and customization(golden).ended, TEMPLATE_SECONDS,
                 "the golden VM to install the agent, link, and its agent to relay cloud-init's end", interval=1)
        assert customization(golden).status == VMCustomization.Status.SUCCEEDED, customization(golden).message
        wait_for(lambda: not customization(golden).iso_path and not tools(golden).iso_mounted, MEDIA_SECONDS,
                 "the golden VM's media to be removed")
        print(f"golden VM linked and customized: {time.monotonic() - began:.0f} s")

        # 2. Shut down by its agent, made a template: its certificate is revoked.
        golden.refresh_from_db()
        ended(guest_tools.request_guest_power(actor, golden, "guest-shutdown"), SHUTDOWN_SECONDS)
        golden.refresh_from_db()
        assert golden.power_state == VM.PowerState.OFF
        ended(templates.request_make_template(actor, golden), TASK_SECONDS)
        golden.refresh_from_db()
        assert golden.is_template
        assert VMCertificate.objects.get(serial=golden_serial).revoked

        # 3. Through the API: three linked clones, hostnames from a CSV, fresh identities, powered on; a fourth
        # whose customization fails.
        prefix = domain_name("web")
        csv = "name,hostname\n" + "".join(f",{hostname}\n" for hostname in HOSTNAMES)
        bulk = accepted(api.post(f"/api/v1/vms/{golden.uuid}/bulk-clone/", {
            "count": 3, "name_pattern": prefix + "-{n}", "linked": True, "per_clone_csv": csv,
            "customization": {"content": CLONE_CONFIG}, "guest_tools": {"mount": True}, "power_on": True,
        }, format="json"))
        failing = accepted(api.post(f"/api/v1/vms/{golden.uuid}/clone/", {
            "name": f"{prefix}-fails", "linked": True, "power_on": True,
            "customization": {"content": FAILING_CONFIG}, "guest_tools": {"mount": True},
        }, format="json"))
        assert ended(bulk, TASK_SECONDS).message == "3 of 3 done"
        ended(failing, TASK_SECONDS)
        clones = list(VM.objects.filter(parent=golden).select_related("host").order_by("name"))
        watched += clones
        assert [vm.name for vm in clones] == [f"{prefix}-1", f"{prefix}-2", f"{prefix}-3", f"{prefix}-fails"]
        expected_hostnames = [*HOSTNAMES, vms.hostname_from(f"{prefix}-fails")]
        assert [vm.hostname for vm in clones] == expected_hostnames
        powered_on = {vm.pk: Task.objects.get(kind="vm.clone", entity_uuid=vm.uuid).finished_at for vm in clones}
        media = {}
        for vm in clones:
            media[vm.pk] = media_paths(vm)
            # Both media are in the domain from its definition (IDE drives, which a running guest cannot take).
            assert set(media[vm.pk]) == {"guest-tools", "customization"}, vm.name
            assert {str(path) for path in media[vm.pk].values()} <= domain_media(vm)
            assert not vm.nics.exists()  # no network: the agent's link is its serial channel
            assert driver.state(vm) == "on"

        # 4. Each clone links as itself, says its hostname, and relays cloud-init's result; its media go.
        wait_for(lambda: all(tools(vm).link_active and customization(vm).ended for vm in clones), CLONES_SECONDS,
                 "every clone to link and relay its customization's end", interval=1)
        rows = []
        expected_results = ["succeeded"] * 3 + ["failed"]
        for vm, hostname, expected in zip(clones, expected_hostnames, expected_results, strict=True):
            shown = api.get(f"/api/v1/vms/{vm.uuid}/guest-tools/").json()  # what the administrator sees
            assert shown["link_active"] and shown["hostname"] == hostname  # the hello's: cloud-init set it
            assert "Debian" in shown["guest_os"]
            certificate = VMCertificate.objects.get(serial=shown["certificate_serial"])
            assert certificate.vm_id == vm.pk and not certificate.revoked and certificate.serial != golden_serial
            assert released_serial(vm) == certificate.serial  # it linked with its own new certificate
            wait_for(lambda vm=vm: media_gone(vm, media[vm.pk]), MEDIA_SECONDS,
                     f"both ISOs of {vm.name} to be ejected and deleted")
            assert not vm.cdroms.filter(purpose__in=["guest-tools", "customization"]).exists()
            result = api.get(f"/api/v1/vms/{vm.uuid}/customization/").json()
            assert result["status"] == expected, f"{vm.name}: {result['message']}"
            reported_at = customization(vm).reported_at
            rows.append((vm.name, hostname, (linked_at(vm) - powered_on[vm.pk]).total_seconds(),
                         (reported_at - powered_on[vm.pk]).total_seconds(), result["status"]))
        assert len({released_serial(vm) for vm in clones}) == 4
        for vm, hostname in zip(clones[:3], HOSTNAMES, strict=True):
            assert f"FACET-JOURNEY {hostname} written by cloud-init" in serial_console(vm)
        message = customization(clones[3]).message
        # cloud-init's own line (22.4 on Debian 12): ('scripts-user', RuntimeError('Runparts: 1 failures (runcmd) ...'))
        assert "scripts-user" in message and "1 failures (runcmd)" in message, message

        # The template's certificate, presented as its agent would: refused, and audited.
        answer = refused_hello(qemu_cluster.virtual_ip, golden_media)
        assert answer["type"] == "refused" and "is a template" in answer.get("reason", ""), answer
        wait_for(lambda: any("is a template" in event.detail["reason"] for event in AuditEvent.objects.filter(
            action="ngt.session.refused", entity_uuid=golden.uuid)), 10, "the refusal in the audit log")
        assert not tools(golden).link_active

        table = times_table(rows)
        TIMES_FILE.parent.mkdir(parents=True, exist_ok=True)
        TIMES_FILE.write_text(f"{table}\n(whole journey: {time.monotonic() - began:.0f} s)\n")
        print(f"\nBulk deployment on {host.driver_uri}, seconds from power-on:\n{table}\n"
              f"whole journey: {time.monotonic() - began:.0f} s")
    except AssertionError:
        for vm in watched:
            print(f"--- serial console of {vm.name}\n{serial_console(vm)[-5000:]}")
        raise
    finally:
        celery_processes.stop_all()  # nothing may act on the domains while they go
        for vm in VM.objects.filter(cluster=qemu_cluster):
            driver.delete(vm)
            for log in (f"{vm.uuid}-console.log", f"{vm.name}.log"):  # virtlogd's, and libvirt's QEMU log
                (CONSOLE_LOG_DIR / log).unlink(missing_ok=True)

