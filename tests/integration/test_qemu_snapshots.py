"""Snapshots and self-service restore on a real guest: the Debian VM of tests/guest_image.py on QEMU, its
Guest Tools installed from their ISO (as in test_qemu_guest.py) with vss-snapshot and self-service-restore on,
a real Guest Tools Service for its host. One guest for the whole story, which a test script in the guest
drives from its side and reports on the serial console (`FACET-TEST NAME: VALUE`, read from virtlogd's log):

1. the guest writes `before` to a file; the console takes a snapshot the agent freezes the guest for (the
   agent's log says so); the guest changes the file to `after`;
2. the console reverts the running VM (powered off, reverted, powered on): the file says `before` again; the
   guest writes `after-revert`, then `facet-guest-tools ssr attach before` hot-plugs the snapshot read-only and
   the agent mounts it under /mnt/facet-restore/before/, where the guest reads `before`; `ssr detach` unmounts
   it and the disk leaves the domain."""

import re

import pytest
from defusedxml.ElementTree import fromstring

from console.core.drivers import get_driver
from console.core.errors import Conflict
from console.core.models import AuditEvent
from console.core.tasks import sending
from console.models import VM, Image, Snapshot
from console.services import power, processes, snapshots, vms
from customization.services.lifecycle import CustomizationRequest
from ngt.models import GuestTools, RestoreDisk
from ngt.services import guest_tools
from tests.guest_image import ensure_guest_image
from tests.integration.conftest import cluster_image, domain_name, run, serial_console
from tests.ngt import conftest as ngt_fixtures
from tests.ngt.test_agent import free_vip
from tests.realparts import wait_for

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
pytestmark = pytest.mark.slow
built_packages, guest_tools_packages = ngt_fixtures.built_packages, ngt_fixtures.guest_tools_packages
ca_key_file = ngt_fixtures.ca_key_file
GiB = 1024**3
BOOT_AND_INSTALL_SECONDS = 600
STEP_SECONDS = 240

# Test-only: the guest's side of the story, a unit started at every boot (cloud-init runs only on the first).
GUEST_SCRIPT = """\
#!/bin/sh
# Each report opens the serial port anew: the getty started meanwhile hangs up whoever had it open.
say() { echo "FACET-TEST $1: $2" > /dev/ttyS0; }
FILE=/root/facet-test.txt
wait_linked() { n=0; until facet-guest-tools status >/dev/null 2>&1 || [ $n -ge 300 ]; do sleep 1; n=$((n+1)); done; }
wait_listed() { n=0; until facet-guest-tools ssr list 2>/dev/null | grep -q "^$1 " || [ $n -ge 600 ]; do
  sleep 2; n=$((n+2)); done; }
if [ ! -e $FILE ]; then
  wait_linked
  echo before > $FILE && sync
  say written before
  wait_listed before
  say agentlog "$(journalctl -u facet-guest-tools --no-pager -o cat | grep -E 'guest (frozen|thawed)' | tr '\\n' '|')"
  echo after > $FILE && sync
  say changed "$(cat $FILE)"
else
  say content "$(cat $FILE)"
  echo after-revert > $FILE && sync
  wait_linked
  wait_listed before
  say attach "$(facet-guest-tools ssr attach before 2>&1 | tr '\\n' ' ')"
  say restored "$(cat /mnt/facet-restore/before/*/root/facet-test.txt 2>/dev/null | tr '\\n' ' ')"
  say filesystems "$(ls /mnt/facet-restore/before | tr '\\n' ' ')"
  say current "$(cat $FILE)"
  say detach "$(facet-guest-tools ssr detach before 2>&1 | tr '\\n' ' ')"
  say mounted "$(grep -c facet-restore /proc/mounts)"
fi
"""
GUEST_UNIT = """\
[Unit]
Description=Facet snapshot test
After=facet-guest-tools.service

[Service]
ExecStart=/bin/sh /root/facet-test.sh

[Install]
WantedBy=multi-user.target
"""


def cloud_config() -> str:
    indent = lambda text: "\n".join("      " + line for line in text.splitlines())  # noqa: E731
    return f"""\
#cloud-config
write_files:
  - path: /root/facet-test.sh
    permissions: "0700"
    content: |
{indent(GUEST_SCRIPT)}
  - path: /etc/systemd/system/facet-test.service
    content: |
{indent(GUEST_UNIT)}
runcmd:
  - mount -o ro LABEL=FACET_TOOLS /mnt
  - sh /mnt/installer/linux/install.sh
  - systemctl enable facet-test.service
  - systemctl start --no-block facet-test.service
"""


def reports(vm: VM) -> dict[str, str]:
    return dict(re.findall(r"^FACET-TEST (\w+): (.*?)\r?$", serial_console(vm), re.MULTILINE))


def reported(vm: VM, name: str, seconds: float) -> str:
    return wait_for(lambda: [reports(vm)[name]] if name in reports(vm) else [], seconds,
                    f"the guest to say {name}", interval=1)[0]


def live_serials(vm: VM) -> set[str]:
    domain = libvirt.open(vm.host.driver_uri).lookupByUUIDString(str(vm.uuid))
    return {disk.findtext("serial") for disk in fromstring(domain.XMLDesc(0)).iterfind("devices/disk")} - {None}


def test_a_consistent_snapshot_reverts_and_restores_files_in_the_guest(
        qemu_cluster, guest_tools_packages, celery_processes, redis_url, settings, actor, run_tasks, monkeypatch):
    settings.REDIS_URL = redis_url
    monkeypatch.setattr(sending, "send", lambda task: None)  # run_tasks runs them here
    qemu_cluster.virtual_ip = free_vip()
    qemu_cluster.save()
    image: Image = cluster_image(qemu_cluster, ensure_guest_image(), "debian-12")
    spec = vms.VMSpec(name=domain_name("snap"), vcpus=2, memory_bytes=GiB, image=image,
                      options={"customization": CustomizationRequest(content=cloud_config())})
    vm = VM.objects.select_related("host").get(uuid=run(vms.request_create_vm(actor, spec), run_tasks).entity_uuid)
    guest_tools.set_capabilities(actor, vm, ["self-service-restore", "vss-snapshot"])
    run(guest_tools.request_mount(actor, vm), run_tasks)
    celery_processes.start("service-qemu-1", processes.guest_tools_service_command(vm.host.name)
                           + f" --address {free_vip()}", "leading:")
    run(power.request_power(actor, vm, "power-on"), run_tasks)
    driver = get_driver(vm.host.driver_uri)
    try:
        assert reported(vm, "written", BOOT_AND_INSTALL_SECONDS) == "before"
        wait_for(lambda: GuestTools.objects.get(vm=vm).link_active, 60, "the agent's link")

        run(snapshots.request_create(actor, vm, "before", "the file says before"), run_tasks)
        snapshot = Snapshot.objects.get(vm=vm, name="before")
        assert snapshot.consistent, snapshot.consistency_note
        assert snapshot.consistency_note.startswith("application-consistent: the agent froze /")
        assert reported(vm, "changed", STEP_SECONDS) == "after"
        log = reported(vm, "agentlog", 10)
        assert "guest frozen" in log and "guest thawed" in log
        vm.refresh_from_db()
        assert vm.disks.get().disk_format == "qcow2" and snapshot.size_bytes > 0

        with pytest.raises(Conflict, match="running state"):
            snapshots.request_revert(actor, snapshot)
        run(snapshots.request_revert(actor, snapshot, confirm=True), run_tasks)
        assert driver.state(vm) == "on"
        assert reported(vm, "content", BOOT_AND_INSTALL_SECONDS) == "before"  # the old content is back

        assert "/mnt/facet-restore/before/" in reported(vm, "attach", STEP_SECONDS)
        assert reported(vm, "restored", 60).strip() == "before"  # read from the snapshot's disk
        assert reported(vm, "current", 10) == "after-revert"
        assert "detached: before" in reported(vm, "detach", 120)
        assert reported(vm, "mounted", 30) == "0"
        assert not RestoreDisk.objects.filter(vm=vm).exists()
        assert not any(serial.startswith("facet-ssr-") for serial in live_serials(vm))  # gone from the domain
        actions = set(AuditEvent.objects.filter(entity_uuid=vm.uuid).values_list("action", flat=True))
        assert {"snapshot.create", "snapshot.revert", "ngt.ssr.list", "ngt.ssr.attach", "ngt.ssr.detach"} <= actions
    except AssertionError:
        print(f"--- serial console of {vm.name}\n{serial_console(vm)[-10000:]}")
        raise
    finally:
        if driver.state(vm) == "on":
            driver.power(vm, "power-off")
    run(vms.request_delete(actor, vm), run_tasks)
