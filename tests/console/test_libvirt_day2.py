"""Day-2 operations on libvirt's `test:///default` (in process, no daemon). That hypervisor keeps definitions
and changes vCPUs of a running domain, but has no device hot plug and no blockresize: here disks and NICs are
changed on VMs that are off (the definition), tests/integration/test_qemu_day2.py changes a running guest."""

import pytest
from defusedxml.ElementTree import fromstring

from console.core.models import Task
from console.models import VM, Host, Network
from console.services import adopt, power, vm_devices, vm_edit, vms

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
from console.core.drivers import get_driver  # noqa: E402

GiB, MiB = 1024**3, 1024**2
URI = "test:///default"


@pytest.fixture
def hosts(cluster):
    Host.objects.filter(cluster=cluster).update(driver_uri=URI)
    yield
    driver = get_driver(URI)
    for vm in VM.objects.all():
        driver.delete(vm)


def run(task: Task, run_tasks) -> Task:
    run_tasks()
    task.refresh_from_db()
    assert task.status == Task.Status.SUCCEEDED, task.error
    return task


def create(actor, run_tasks, **overrides) -> VM:
    values = {"name": "web-1", "vcpus": 1, "memory_bytes": GiB, "disk_sizes": [MiB], **overrides}
    return VM.objects.select_related("host").get(uuid=run(vms.request_create_vm(actor, vms.VMSpec(**values)),
                                                           run_tasks).entity_uuid)


def definition(vm: VM, flags: int = libvirt.VIR_DOMAIN_XML_INACTIVE):
    return fromstring(libvirt.open(URI).lookupByUUIDString(str(vm.uuid)).XMLDesc(flags))


def test_a_new_domain_can_grow_to_its_maxima_and_boots_in_its_order(cluster, hosts, actor, run_tasks):
    vm = create(actor, run_tasks)
    domain = definition(vm)
    assert (domain.find("vcpu").get("current"), domain.findtext("vcpu")) == ("1", "8")
    assert [b.get("dev") for b in domain.iterfind("os/boot")] == ["hd"]


def test_edits_of_a_vm_that_is_off_rename_and_reshape_its_domain(cluster, hosts, actor, run_tasks):
    vm = create(actor, run_tasks)
    run(vm_edit.request_update(actor, vm, {"name": "web-2", "vcpus": 8, "memory_bytes": 4 * GiB,
                                           "boot_order": ["cdrom", "hd"]}), run_tasks)
    domain = definition(vm)
    assert domain.findtext("name") == "web-2"
    assert (domain.find("vcpu").get("current", "8"), domain.findtext("vcpu")) == ("8", "8")  # current=max: omitted
    assert int(domain.findtext("currentMemory")) * 1024 == 4 * GiB
    assert [b.get("dev") for b in domain.iterfind("os/boot")] == ["cdrom", "hd"]


def test_a_running_domain_takes_vcpus_at_once_and_more_than_its_maximum_at_the_next_power_cycle(
        cluster, hosts, actor, run_tasks):
    vm = create(actor, run_tasks, power_on=True)
    run(vm_edit.request_update(actor, vm, {"vcpus": 4}), run_tasks)
    vm.refresh_from_db()
    assert (vm.vcpus, vm.pending) == (4, {})
    assert definition(vm, 0).find("vcpu").get("current") == "4"  # the running domain
    Host.objects.filter(pk=vm.host_id).update(cpus=16)
    vm.refresh_from_db()
    task = run(vm_edit.request_update(actor, vm, {"vcpus": 12}), run_tasks)
    assert "next power cycle" in task.message
    vm.refresh_from_db()
    assert (vm.vcpus, vm.pending["vcpus"]) == (4, 12)
    assert definition(vm, 0).find("vcpu").get("current") == "4"
    assert definition(vm).findtext("vcpu") == "12"  # the definition: 12 of 12
    run(power.request_power(actor, vm, "power-off"), run_tasks)
    vm.refresh_from_db()
    assert (vm.vcpus, vm.pending) == (12, {})


def test_pause_and_resume_a_domain(cluster, hosts, actor, run_tasks):
    vm = create(actor, run_tasks, power_on=True)
    run(power.request_power(actor, vm, "pause"), run_tasks)
    assert get_driver(URI).state(vm) == "paused"
    vm.refresh_from_db()
    run(power.request_power(actor, vm, "resume"), run_tasks)
    assert get_driver(URI).state(vm) == "on"


def test_disks_and_nics_of_a_vm_that_is_off_change_its_definition(cluster, hosts, actor, run_tasks):
    vm = create(actor, run_tasks)
    lan = Network.objects.get(name="lan")
    run(vm_devices.request_add_disk(actor, vm, size_bytes=2 * MiB), run_tasks)
    disk = vm.disks.get(index=1)
    sources = [d.find("source").get("file") for d in definition(vm).iterfind("devices/disk[@device='disk']")]
    assert str(disk.path) in sources
    assert definition(vm).find("devices/disk[@device='disk'][2]/serial").text == disk.uuid.hex[:20]
    run(vm_devices.request_grow_disk(actor, vm, disk, 3 * MiB), run_tasks)
    assert disk.path.stat().st_size == 3 * MiB
    run(vm_devices.request_add_nic(actor, vm, lan, ip="auto"), run_tasks)
    nic = vm.nics.get()
    assert [i.find("mac").get("address") for i in definition(vm).iterfind("devices/interface")] == [nic.mac]
    run(vm_devices.request_remove_nic(actor, vm, nic), run_tasks)
    assert definition(vm).find("devices/interface") is None
    run(vm_devices.request_remove_disk(actor, vm, disk), run_tasks)
    disks = definition(vm).iterfind("devices/disk[@device='disk']")
    assert str(disk.path) not in [d.find("source").get("file") for d in disks]
    assert not disk.path.exists()


def test_unmanaged_domains_are_listed_and_one_outside_the_containers_is_refused(cluster, hosts, actor, run_tasks):
    managed = create(actor, run_tasks)
    host = Host.objects.get(name="host-1")
    listed = {d["name"]: d for d in adopt.unmanaged(host)}
    assert managed.name not in listed
    refused = listed["test"]  # the domain test:///default starts with
    assert any("outside every storage container" in p for p in refused["problems"])
    with pytest.raises(adopt.Conflict):
        adopt.request_adopt(actor, host, refused["uuid"])
    assert not VM.objects.filter(uuid=refused["uuid"]).exists()


def test_a_domain_with_its_disk_in_a_container_is_adopted(cluster, hosts, actor, run_tasks):
    storage_container = cluster.storage_containers.get()
    disk = storage_container.resolve("legacy/root.raw")
    disk.parent.mkdir()
    disk.write_bytes(b"\0" * MiB)
    connection = libvirt.open(URI)
    domain = connection.defineXML(f"""<domain type='test'><name>legacy</name><memory unit='MiB'>256</memory>
      <vcpu>2</vcpu><os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
      <interface type='user'><mac address='52:54:00:12:34:56'/></interface></devices></domain>""")
    try:
        host = Host.objects.get(name="host-1")
        run(adopt.request_adopt(actor, host, domain.UUIDString(), name="legacy-vm"), run_tasks)
        vm = VM.objects.get(uuid=domain.UUIDString())
        assert (vm.name, vm.power_state, vm.vcpus, vm.memory_bytes) == ("legacy-vm", "off", 2, 256 * MiB)
        assert vm.disks.get().path == disk and vm.nics.get().network.name == "lan"
        run(power.request_power(actor, vm, "power-on"), run_tasks)
        assert domain.isActive()
    finally:
        if domain.isActive():
            domain.destroy()
        domain.undefine()
