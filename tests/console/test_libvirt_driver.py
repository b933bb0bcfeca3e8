"""The libvirt driver on libvirt's own `test:///default` hypervisor (in process, no daemon), through the
console's services where they call it. Device changes (CD-ROM media, disk hot plug) are not implemented by
that hypervisor: tests/integration/test_qemu_driver.py runs them on real QEMU."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from defusedxml.ElementTree import fromstring

from console.core.drivers import DriverError, get_driver
from console.core.drivers.libvirt_network import Carrier, NetworkMapError, parse_network_map
from console.core.models import Task
from console.models import VM, Host, Image, Network
from console.services import hosts as host_services
from console.services import power, vms

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
from console.core.drivers.libvirt import CHANNEL_NAME, LibvirtDriver  # noqa: E402

GiB, MiB = 1024**3, 1024**2
URI = "test:///default"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hosts(cluster):
    Host.objects.filter(cluster=cluster).update(driver_uri=URI)
    yield
    # test:///default keeps its domains for the life of the process: leave it as we found it.
    driver = get_driver(URI)
    for vm in VM.objects.all():
        driver.delete(vm)


def create(actor, run_tasks, **overrides) -> VM:
    values = {"name": "web-1", "vcpus": 2, "memory_bytes": GiB, **overrides}
    task = vms.request_create_vm(actor, vms.VMSpec(**values))
    run_tasks()
    task.refresh_from_db()
    assert task.status == Task.Status.SUCCEEDED, task.error
    return VM.objects.get(uuid=task.entity_uuid)


def domain_of(vm: VM):
    return fromstring(libvirt.open(URI).lookupByUUIDString(str(vm.uuid)).XMLDesc(0))


@pytest.mark.parametrize("uri", ["qemu:///system", "qemu+ssh://host-2.example/system", URI])
def test_libvirt_uris_get_the_libvirt_driver(uri):
    assert isinstance(get_driver(uri), LibvirtDriver)


def test_an_unknown_uri_names_the_known_ones():
    with pytest.raises(DriverError, match=r"xen://.*known: sim://, qemu://, qemu\+ssh://, qemu\+tls://, test://"):
        get_driver("xen://")


def test_create_defines_the_domain_as_the_vm(cluster, hosts, actor, run_tasks):
    iso = Image.objects.get(name="rescue-iso")
    vm = create(actor, run_tasks, image=iso, disk_sizes=[GiB], power_on=True)

    domain = domain_of(vm)
    assert domain.findtext("uuid") == str(vm.uuid)
    assert domain.findtext("name") == "web-1"
    assert domain.get("type") == "test"
    assert int(domain.findtext("currentMemory")) == GiB // 1024  # KiB
    assert int(domain.findtext("memory")) == 2 * GiB // 1024  # the balloon can give it twice as much
    assert (domain.find("vcpu").get("current"), domain.findtext("vcpu")) == ("2", "8")  # up to the host's CPUs
    disk, cdrom = domain.findall("devices/disk")
    assert (disk.get("device"), disk.find("target").get("bus"), disk.find("source").get("file")) == (
        "disk", "virtio", str(vm.disks.get().path))
    assert disk.find("driver").get("type") == "raw"
    assert (cdrom.get("device"), cdrom.find("target").get("bus"), cdrom.find("source").get("file")) == (
        "cdrom", "ide", str(iso.path))
    channel = domain.find("devices/channel")
    assert channel.get("type") == "unix"
    assert channel.find("target").get("name") == CHANNEL_NAME
    assert vm.power_state == "on"


def nic_of(actor, run_tasks):
    """The one interface of a VM with a NIC on the test cluster's network `lan` (VLAN 10), and the NIC."""
    vm = create(actor, run_tasks, nics=[vms.NicSpec(network=Network.objects.get(name="lan"))])
    (interface,) = domain_of(vm).findall("devices/interface")
    return interface, vm.nics.get()


def test_a_nic_on_a_network_nobody_mapped_gets_user_mode_networking(cluster, hosts, actor, run_tasks):
    interface, nic = nic_of(actor, run_tasks)
    assert interface.get("type") == "user"
    assert interface.find("mac").get("address") == nic.mac
    assert interface.find("model").get("type") == "virtio"
    assert interface.find("source") is None


@pytest.mark.parametrize(("carrier", "kind", "source", "tag"), [
    (Carrier("bridge", "br0"), "bridge", {"bridge": "br0"}, None),  # a Linux bridge cannot tag: it carries VLAN 10
    (Carrier("ovs", "br-ext"), "bridge", {"bridge": "br-ext"}, "10"),
    (Carrier("network", "default"), "network", {"network": "default"}, None),
])
def test_a_nic_goes_on_what_carries_its_network(cluster, hosts, actor, run_tasks, settings, carrier, kind, source,
                                                tag):
    settings.FACET_LIBVIRT_NETWORKS = {"lan": carrier}
    interface, nic = nic_of(actor, run_tasks)
    assert (interface.get("type"), interface.find("source").attrib) == (kind, source)
    assert (interface.find("mac").get("address"), interface.find("model").get("type")) == (nic.mac, "virtio")
    assert (interface.find("vlan/tag").get("id") if tag else interface.find("vlan")) == tag
    assert (interface.find("virtualport") is not None) == (carrier.kind == "ovs")


def test_the_network_map_reads_every_carrier():
    assert parse_network_map(" lan=bridge:br0, dmz = ovs:br-ext,lab=network:default, test=user,") == {
        "lan": Carrier("bridge", "br0"), "dmz": Carrier("ovs", "br-ext"), "lab": Carrier("network", "default"),
        "test": Carrier("user")}
    assert parse_network_map("") == {}


@pytest.mark.parametrize(("text", "problem"), [
    ("lan", "'lan' names no network"),
    ("=bridge:br0", "'=bridge:br0' names no network"),
    ("lan=br0", "network 'lan': 'br0' is not a carrier: expected NAME=bridge:BRIDGE, NAME=ovs:BRIDGE"),
    ("lan=macvtap:eth0", "'macvtap:eth0' is not a carrier"),
    ("lan=bridge:", "network 'lan': bridge needs a name without spaces, quotes or slashes, not ''"),
    ("lan=network:a'b", "not \"a'b\""),
    ("lan=user, lan=bridge:br0", "network 'lan' is mapped twice"),
])
def test_a_bad_network_map_says_what_is_wrong(text, problem):
    with pytest.raises(NetworkMapError) as error:
        parse_network_map(text)
    assert problem in str(error.value)


def test_a_bad_network_map_stops_the_console_at_start():
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "FACET_LIBVIRT_NETWORKS": "lan=br0"}, timeout=60)
    assert done.returncode != 0
    assert "ImproperlyConfigured: FACET_LIBVIRT_NETWORKS: network 'lan': 'br0' is not a carrier" in done.stderr


def test_a_vm_that_is_not_running_has_no_channel_socket(cluster, hosts, actor, run_tasks):
    vm = create(actor, run_tasks)
    assert get_driver(URI).agent_channel_path(vm) is None


def test_power_actions_follow_the_domain(cluster, hosts, actor, run_tasks):
    vm = create(actor, run_tasks)
    driver = get_driver(URI)
    assert driver.state(vm) == "off"
    assert driver.power(vm, "power-on") == "on"
    assert driver.power(vm, "power-on") == "on"  # repeating is harmless
    assert driver.power(vm, "reset") == "on"
    assert driver.power(vm, "reboot") == "on"
    assert driver.power(vm, "shutdown") == "off"
    with pytest.raises(DriverError, match="cannot reset VM web-1 while it is off"):
        driver.power(vm, "reset")
    assert driver.power(vm, "power-on") == "on"
    assert driver.power(vm, "power-off") == "off"
    assert driver.state(vm) == "off"


def test_power_service_and_reconcile_read_the_domain(cluster, hosts, actor, run_tasks):
    vm = create(actor, run_tasks)
    power.request_power(actor, vm, "power-on")
    run_tasks()
    vm.refresh_from_db()
    assert vm.power_state == "on"

    get_driver(URI).power(vm, "power-off")  # behind the console's back
    assert host_services.reconcile_power_states() == 1
    vm.refresh_from_db()
    assert vm.power_state == "off"


def test_states_answers_for_every_vm_at_once(cluster, hosts, actor, run_tasks):
    running = create(actor, run_tasks, name="web-1", power_on=True)
    stopped = create(actor, run_tasks, name="web-2")
    missing = VM(name="ghost", uuid="00000000-0000-4000-8000-000000000001")
    assert get_driver(URI).states([running, stopped, missing]) == {
        running.uuid: "on", stopped.uuid: "off", missing.uuid: "unknown"}


def test_create_and_delete_are_idempotent(cluster, hosts, actor, run_tasks):
    vm = create(actor, run_tasks, power_on=True)
    driver = get_driver(URI)
    driver.create(vm)  # a rerun of the create task
    vms.request_delete(actor, vm)
    run_tasks()
    assert not VM.objects.filter(uuid=vm.uuid).exists()
    assert driver.state(vm) == "unknown"
    driver.delete(vm)  # a rerun of the delete task


def test_a_refused_definition_is_a_clear_error_and_leaves_nothing(cluster, hosts, actor, run_tasks):
    # test:///default comes with a domain named "test" of another uuid: libvirt refuses a second one.
    task = vms.request_create_vm(actor, vms.VMSpec(name="test", vcpus=1, memory_bytes=GiB, disk_sizes=[MiB]))
    run_tasks()
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert task.error.startswith("defining the domain of VM test failed on test:///default:")
    assert "already exists" in task.error
    assert not VM.objects.filter(uuid=task.entity_uuid).exists()
    assert not list(cluster.storage_containers.get().resolve("vms").iterdir())


def test_operations_on_an_undefined_vm_say_so(cluster, hosts):
    ghost = VM(name="ghost", uuid="00000000-0000-4000-8000-000000000002")
    with pytest.raises(DriverError, match="VM ghost is not defined on the hypervisor test:///default"):
        get_driver(URI).power(ghost, "power-on")


def test_bad_cdrom_requests_are_refused_before_libvirt(cluster, hosts, actor, run_tasks, tmp_path):
    vm = create(actor, run_tasks)
    driver = get_driver(URI)
    not_iso = tmp_path / "notes.txt"
    not_iso.write_text("hello")
    with pytest.raises(DriverError, match="is not an ISO 9660 image"):
        driver.insert_cdrom(vm, 0, not_iso)
    with pytest.raises(DriverError, match="CD-ROM slot 12 of VM web-1 does not exist: a VM has slots 0 to 11"):
        driver.eject_cdrom(vm, 12)
    with pytest.raises(DriverError, match="disk file .* does not exist"):
        driver.attach_disk(vm, tmp_path / "missing.raw", "vg1-disk0")


def test_a_hypervisor_that_cannot_be_reached_is_a_clear_error(tmp_path):
    vm = VM(name="web-1", uuid="00000000-0000-4000-8000-000000000003")
    with pytest.raises(DriverError, match=f"cannot connect to the hypervisor at test://{tmp_path}/none.xml"):
        get_driver(f"test://{tmp_path}/none.xml").state(vm)


needs_qemu_img = pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img (make setup installs it)")


def image_info(path) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True,
                                     check=True, text=True).stdout)


@needs_qemu_img
def test_a_linked_clone_is_a_qcow2_overlay_and_a_full_copy_flattens_it(tmp_path):
    driver = get_driver(URI)
    base = tmp_path / "base.raw"
    driver.create_disk(base, 8 * MiB)
    with open(base, "r+b") as handle:
        handle.seek(3 * MiB)
        handle.write(b"bootsector")
    steps = []
    overlay = tmp_path / "linked" / "disk0.raw"
    driver.clone_disk(base, overlay, True, steps.append)
    info = image_info(overlay)
    assert (info["format"], info["backing-filename"], info["backing-filename-format"]) == ("qcow2", str(base), "raw")
    assert steps == [1.0]

    driver.create_disk(overlay, 16 * MiB, "qcow2")  # grows the overlay's virtual size; the base is untouched
    assert image_info(overlay)["virtual-size"] == 16 * MiB
    assert base.stat().st_size == 8 * MiB

    steps.clear()
    copy = tmp_path / "full" / "disk0.raw"
    driver.clone_disk(overlay, copy, False, steps.append, "qcow2")
    assert image_info(copy)["format"] == "raw"
    assert copy.stat().st_size == 16 * MiB
    with open(copy, "rb") as handle:
        handle.seek(3 * MiB)
        assert handle.read(10) == b"bootsector"
    assert copy.stat().st_blocks * 512 < 2 * MiB  # still sparse
    assert steps and steps[-1] == 1.0
    assert not (tmp_path / "full" / "disk0.raw.part").exists()


@needs_qemu_img
def test_a_copy_of_a_missing_disk_is_a_clear_error(tmp_path):
    with pytest.raises(DriverError, match="source disk .*nothing.raw does not exist"):
        get_driver(URI).clone_disk(tmp_path / "nothing.raw", tmp_path / "copy.raw", False, lambda _: None)


@needs_qemu_img
def test_a_copy_whose_progress_fails_leaves_no_qemu_img_running(tmp_path, monkeypatch):
    source = tmp_path / "base.raw"
    get_driver(URI).create_disk(source, 64 * MiB)
    started, real_popen = [], subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def progress(_fraction):
        raise RuntimeError("the task was cancelled")

    monkeypatch.setattr("console.core.drivers.qemu_img.subprocess.Popen", popen)
    with pytest.raises(RuntimeError, match="cancelled"):
        get_driver(URI).clone_disk(source, tmp_path / "copy.raw", False, progress)
    (process,) = started
    assert process.returncode is not None  # killed and waited for, not left behind
    assert not (tmp_path / "copy.raw").exists() and not (tmp_path / "copy.raw.part").exists()


def test_a_failed_copy_reports_qemu_img_errors_however_long(tmp_path, monkeypatch):
    # A qemu-img that writes more to stderr than a pipe holds before it ends: read after stdout's end
    # through a pipe, this would block both sides.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "qemu-img"
    fake.write_text("#!/bin/sh\nhead -c 1048576 /dev/zero | tr '\\0' x >&2\n"
                    "echo 'qemu-img: Could not open the source' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    source = tmp_path / "base.raw"
    source.write_bytes(b"\0" * 512)
    with pytest.raises(DriverError, match="base.raw to copy.raw.part failed: x+qemu-img: Could not open") as error:
        get_driver(URI).clone_disk(source, tmp_path / "copy.raw", False, lambda _: None)
    assert len(str(error.value)) < 3000  # the end of what qemu-img said, not all of it
    assert not (tmp_path / "copy.raw").exists() and not (tmp_path / "copy.raw.part").exists()


class UnpluggingDomain:
    """A running domain whose guest lets go of a hot-unplugged disk after a few looks (test:///default has no
    device changes; on real QEMU a guest without an OS never lets go, see tests/integration)."""

    def __init__(self, looks_until_released: int) -> None:
        self.disk = '<disk type="file" device="disk"><target dev="vdb" bus="virtio"/><serial>vg1-disk0</serial></disk>'
        self.defined, self.looks, self.requests = True, looks_until_released, []

    def isActive(self) -> bool:  # noqa: N802 (libvirt's names)
        return True

    def XMLDesc(self, flags: int) -> str:  # noqa: N802
        if flags & libvirt.VIR_DOMAIN_XML_INACTIVE:
            return f"<domain><devices>{self.disk if self.defined else ''}</devices></domain>"
        self.looks -= 1
        return f"<domain><devices>{self.disk if self.looks >= 0 else ''}</devices></domain>"

    def detachDeviceFlags(self, xml: str, flags: int) -> None:  # noqa: N802
        self.requests.append(flags)
        self.defined = False


def test_a_disk_detach_on_a_running_vm_waits_for_the_guest_to_let_go(monkeypatch):
    domain = UnpluggingDomain(looks_until_released=3)
    monkeypatch.setattr(LibvirtDriver, "_domain", lambda self, vm: domain)
    monkeypatch.setattr("console.core.drivers.libvirt.time.sleep", lambda _seconds: None)
    vm = VM(name="web-1", uuid="00000000-0000-4000-8000-000000000004")
    get_driver(URI).detach_disk(vm, "vg1-disk0")
    assert domain.looks < 0  # returned only once the live domain no longer had the disk
    assert domain.requests == [libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_AFFECT_LIVE]
    get_driver(URI).detach_disk(vm, "vg1-disk0")  # a rerun changes nothing
    assert len(domain.requests) == 1


@needs_qemu_img
@pytest.mark.parametrize(("asked", "size"), [([], 64 * MiB), ([96 * MiB], 96 * MiB)])
def test_a_vm_from_a_qcow2_image_records_the_size_of_its_disk(cluster, hosts, actor, run_tasks, asked, size):
    storage_container = cluster.storage_containers.get()
    path = storage_container.resolve("images/cloud.raw")  # uploads are named .raw whatever their format
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), str(64 * MiB)], check=True)
    image = Image.objects.create(cluster=cluster, name="cloud", kind="disk", storage_container=storage_container,
                                 file_name="images/cloud.raw", size_bytes=path.stat().st_size,
                                 disk_format="qcow2")
    disk = create(actor, run_tasks, image=image, disk_sizes=asked).disks.get()
    assert disk.size_bytes == size
    info = image_info(disk.path)
    assert (info["format"], info["virtual-size"]) == ("raw", size)


def test_a_stopped_vm_migrates_to_another_libvirt_with_its_definition(hosts, actor, run_tasks, tmp_path):
    """No second libvirtd runs here: the target is a second instance of libvirt's test driver (a node of its
    own, from an XML file), and the VM, off, moves by its definition (what a drain does with a stopped VM)."""
    from console.services import hosts as host_services

    node = tmp_path / "node.xml"
    node.write_text("<node><cpu><mode>host-passthrough</mode></cpu></node>")
    Host.objects.filter(name="host-2").update(driver_uri=f"test://{node}")
    vm = create(actor, run_tasks, host=Host.objects.get(name="host-1"))
    parent = host_services.request_enter_maintenance(actor, Host.objects.get(name="host-1"))
    run_tasks()
    parent.refresh_from_db()
    assert parent.status == "succeeded", list(parent.children.values_list("error", flat=True))
    vm.refresh_from_db()
    assert vm.host.name == "host-2"
    assert get_driver(f"test://{node}").state(vm) == "off"
    assert get_driver(URI)._lookup(vm) is None


def test_cd_roms_above_slot_3_are_scsi_on_the_virtio_scsi_bus(cluster, hosts, actor, run_tasks):
    iso = Image.objects.get(name="rescue-iso")
    vm = create(actor, run_tasks, image=iso, disk_sizes=[MiB])
    vm.cdroms.create(slot=4, iso_path=str(iso.path), image=iso, purpose="image")
    get_driver(URI).delete(vm)
    get_driver(URI).create(vm)
    devices = domain_of(vm).find("devices")
    drives = {d.find("target").get("dev"): (d.find("target").get("bus"), d.find("address").get("unit"))
              for d in devices.iterfind("disk[@device='cdrom']")}
    assert drives == {"hda": ("ide", "0"), "sda": ("scsi", "0")}
    assert [c.get("model") for c in devices.iterfind("controller[@type='scsi']")] == ["virtio-scsi"]


def test_a_running_vm_gets_no_new_ide_drive_and_is_told_what_to_do(cluster, hosts, actor, run_tasks):
    iso = Image.objects.get(name="rescue-iso")
    vm = create(actor, run_tasks, disk_sizes=[MiB], power_on=True)
    with pytest.raises(DriverError, match=r"VM web-1 runs and has no CD-ROM drive in slot 1: the IDE bus \(slots 0 "
                                          r"to 3\) takes a new drive only while the VM is off; power it off, or use a "
                                          r"slot from 4 up \(SCSI\), which can be added while it runs"):
        get_driver(URI).insert_cdrom(vm, 1, iso.path)
    get_driver(URI).eject_cdrom(vm, 7)  # no drive there: nothing to eject


@pytest.mark.parametrize(("used", "running", "slot"), [
    (set(), False, 0), ({0, 1}, False, 2), ({0, 1, 2, 3}, False, 4), ({0}, True, 4), ({0, 4, 5}, True, 6),
    (set(range(12)), False, None), ({0, *range(4, 12)}, True, None),
])
def test_a_new_drive_takes_the_lowest_slot_the_bus_allows(used, running, slot):
    assert LibvirtDriver(URI).new_cdrom_slot(used, running) == slot
