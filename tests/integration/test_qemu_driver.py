"""The libvirt driver on real QEMU (`qemu:///system`, TCG where KVM does not work), through the console's
services: a VM without an operating system (the BIOS waits for a boot device), which is all its devices
need. tests/integration/test_qemu_guest.py boots a real guest."""

from pathlib import Path

import pytest
from defusedxml.ElementTree import fromstring

from console.core.drivers import DriverError, get_driver
from console.models import VM, Image
from console.services import cdroms, power, vms
from tests.integration.conftest import domain_name, run

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
libvirt_driver = pytest.importorskip("console.core.drivers.libvirt")
pytestmark = pytest.mark.slow
MiB = 1024**2


def domain_xml(vm: VM, flags: int = 0) -> str:
    return libvirt.open(vm.host.driver_uri).lookupByUUIDString(str(vm.uuid)).XMLDesc(flags)


def live_devices(vm: VM):
    return fromstring(domain_xml(vm)).find("devices")


def cdrom_source(vm: VM, slot: int) -> str | None:
    drive = next(d for d in live_devices(vm).iter("disk") if d.find("target").get("dev") == "hd" + "abcd"[slot])
    source = drive.find("source")
    return source.get("file") if source is not None else None


def serials(vm: VM) -> set[str]:
    return {d.findtext("serial") for d in live_devices(vm).iter("disk") if d.findtext("serial")}


def test_a_vm_on_real_qemu_runs_and_changes_its_devices(qemu_cluster, actor, run_tasks, monkeypatch):
    spec = vms.VMSpec(name=domain_name("qemu-vm"), vcpus=1, memory_bytes=128 * MiB, disk_sizes=[16 * MiB])
    task = run(vms.request_create_vm(actor, spec), run_tasks)
    vm = VM.objects.select_related("host").get(uuid=task.entity_uuid)
    driver = get_driver(vm.host.driver_uri)
    assert driver.state(vm) == "off"
    volume = Path(qemu_cluster.storage_containers.get().resolve("volumes/data.raw"))

    driver.attach_disk(vm, volume, "vg1-disk0")  # to the definition of a VM that is off
    assert serials(vm) == {"vg1-disk0"}
    driver.detach_disk(vm, "vg1-disk0")
    assert serials(vm) == set()

    iso = Image.objects.get(name="rescue-iso")
    run(cdroms.request_insert(actor, vm, iso), run_tasks)  # into the definition of a VM that is off
    run(cdroms.request_eject(actor, vm, 0), run_tasks)
    assert cdrom_source(vm, 0) is None
    run(cdroms.request_insert(actor, vm, iso), run_tasks)

    assert driver.agent_channel_path(vm) is None
    run(power.request_power(actor, vm, "power-on"), run_tasks)
    vm.refresh_from_db()
    assert vm.power_state == "on" and driver.state(vm) == "on"
    assert cdrom_source(vm, 0) == str(iso.path)  # the running guest has the disc
    assert driver.agent_channel_path(vm).is_socket()  # QEMU listens there for the Guest Tools Service
    # A media change in the running guest: test_qemu_guest.py ejects the tools ISO once the guest is up (here
    # the BIOS may still be probing the drive, and a tray it closes right after libvirt opened it fails the
    # change).
    with pytest.raises(DriverError, match=r"no CD-ROM drive in slot 1: the IDE bus \(slots 0 to 3\) takes a new "
                                          r"drive only while the VM is off"):
        driver.insert_cdrom(vm, 1, iso.path)

    driver.attach_disk(vm, volume, "vg1-disk0")  # hot plugged into the running guest
    assert serials(vm) == {"vg1-disk0"}
    driver.attach_disk(vm, volume, "vg1-disk0")  # a rerun changes nothing

    # A guest without an operating system never answers the unplug: the detach fails, and says so, rather
    # than report a disk detached that the guest still holds. The definition has lost it either way.
    monkeypatch.setattr(libvirt_driver, "DETACH_WAIT_SECONDS", 1)
    for _attempt in range(2):  # a rerun asks the guest again
        with pytest.raises(DriverError, match=f"the guest of VM {vm.name} did not release disk vg1-disk0 within 1 s"):
            driver.detach_disk(vm, "vg1-disk0")
        assert serials(vm) == {"vg1-disk0"}
        assert "vg1-disk0" not in domain_xml(vm, libvirt.VIR_DOMAIN_XML_INACTIVE)

    run(power.request_power(actor, vm, "power-off"), run_tasks)
    assert driver.state(vm) == "off"
    assert serials(vm) == set()  # the guest is gone, and the definition had lost it
    driver.detach_disk(vm, "vg1-disk0")  # a rerun changes nothing

    run(vms.request_delete(actor, vm), run_tasks)
    assert driver.state(vm) == "unknown"
    assert not VM.objects.filter(uuid=vm.uuid).exists()
