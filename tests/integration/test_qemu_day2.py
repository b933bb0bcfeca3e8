"""Day-2 operations on real QEMU (`qemu:///system`, TCG where KVM does not work). One Debian guest
(tests/guest_image.py) is booted for the whole module: it writes what it sees (online CPUs, MemTotal, its
disks with their sizes, its network interfaces) to its serial console every two seconds, and the test reads
that from virtlogd's log while Facet hot-adds a vCPU, memory, a disk it then grows, an imported image's copy
and a NIC. The other tests need no operating system: an image import from a local HTTP server, and a domain
made with `virsh define` that Facet adopts, then powers on and off."""

import hashlib
import http.server
import ipaddress
import re
import subprocess
import threading
import uuid

import pytest

from console.core.drivers import get_driver
from console.core.tasks import sending
from console.models import VM, Host, Image, Network
from console.services import adopt, image_import, power, vm_devices, vm_edit, vms
from customization.services.lifecycle import CustomizationRequest
from tests.guest_image import ensure_guest_image
from tests.integration.conftest import cluster_image, domain_name, run, serial_console
from tests.realparts import wait_for

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
pytestmark = pytest.mark.slow
GiB, MiB = 1024**3, 1024**2
BOOT_SECONDS = 420
SEE_SECONDS = 90

# The guest's report; a udev rule onlines a hot-added CPU (Debian leaves it offline, unlike RHEL).
CLOUD_CONFIG = """\
#cloud-config
write_files:
  - path: /etc/udev/rules.d/80-facet-cpu-online.rules
    content: |
      SUBSYSTEM=="cpu", ACTION=="add", TEST=="online", ATTR{online}=="0", ATTR{online}="1"
  - path: /usr/local/bin/facet-report
    permissions: "0755"
    content: |
      #!/bin/sh
      while true; do
        echo "FACET-REPORT cpus=$(grep -c ^processor /proc/cpuinfo)" \\
             "memkib=$(awk '/MemTotal/ {print $2}' /proc/meminfo)" \\
             "disks=$(lsblk -bdnr -o NAME,SIZE | tr ' \\n' '=;')" \\
             "nics=$(ls /sys/class/net | tr '\\n' ';') END"
        sleep 2
      done
runcmd:
  - [sh, -c, "udevadm control --reload; setsid /usr/local/bin/facet-report > /dev/ttyS0 2>&1 < /dev/null &"]
"""
REPORT = re.compile(r"FACET-REPORT cpus=(\d+) memkib=(\d+) disks=(\S*) nics=(\S*) END")


def seen(vm: VM) -> dict | None:
    """The guest's last report: cpus, memkib, disks {name: bytes}, nics [names]."""
    reports = REPORT.findall(serial_console(vm))
    if not reports:
        return None
    cpus, memkib, disks, nics = reports[-1]
    return {"cpus": int(cpus), "memkib": int(memkib),
            "disks": {name: int(size) for name, _, size in (d.partition("=") for d in disks.split(";") if "=" in d)},
            "nics": [n for n in nics.split(";") if n]}


def until_seen(vm: VM, predicate, what: str) -> dict:
    return wait_for(lambda: (report := seen(vm)) and predicate(report) and report, SEE_SECONDS,
                    f"the guest to see {what} (last report: {seen(vm)})", interval=1)


@pytest.fixture
def web_server(tmp_path, settings):
    """A local HTTP server, whose loopback address the test allows to import from."""
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.FACET_IMAGE_IMPORT_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def import_qcow2(actor, run_tasks, web_server, size: int) -> Image:
    """A qcow2 with data in it, imported from the local server with its checksum, converted on the way."""
    root, base = web_server
    raw = root / "seed.raw"
    raw.write_bytes(b"FACET-IMPORTED" * 1000)
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(root / "app.qcow2")],
                   check=True)
    subprocess.run(["qemu-img", "resize", "-q", "-f", "qcow2", str(root / "app.qcow2"), str(size)], check=True)
    digest = hashlib.sha256((root / "app.qcow2").read_bytes()).hexdigest()
    task = run(image_import.request_import(actor, f"{base}/app.qcow2", sha256=digest), run_tasks)
    image = Image.objects.get(name="app.qcow2")
    assert (image.disk_format, image.sha256, str(image.uuid)) == ("qcow2", digest, str(task.entity_uuid))
    info = subprocess.run(["qemu-img", "info", "--output=json", "-f", "qcow2", str(image.path)],
                          capture_output=True, text=True, check=True).stdout
    assert '"backing-filename"' not in info and f'"virtual-size": {size}' in info
    return image


def test_a_running_guest_gets_vcpus_memory_disks_and_a_nic_and_sees_them(
        qemu_cluster, actor, run_tasks, monkeypatch, web_server):
    monkeypatch.setattr(sending, "send", lambda task: None)  # run_tasks runs them here
    guest_image = cluster_image(qemu_cluster, ensure_guest_image(), "debian-12")
    spec = vms.VMSpec(name=domain_name("day2"), vcpus=1, memory_bytes=GiB, image=guest_image, power_on=True,
                      options={"customization": CustomizationRequest(content=CLOUD_CONFIG)})
    vm = VM.objects.select_related("host").get(uuid=run(vms.request_create_vm(actor, spec), run_tasks).entity_uuid)
    assert (vm.max_vcpus, vm.max_memory_bytes) == (2, 2 * GiB)  # this host's 2 CPUs; twice the memory
    driver = get_driver(vm.host.driver_uri)
    try:
        first = wait_for(lambda: seen(vm), BOOT_SECONDS, "the guest to boot and report", interval=2)
        assert first["cpus"] == 1 and "vda" in first["disks"] and first["nics"] == ["lo"]

        vm.refresh_from_db()
        run(vm_edit.request_update(actor, vm, {"vcpus": 2, "memory_bytes": GiB + 512 * MiB}), run_tasks)
        vm.refresh_from_db()
        assert (vm.vcpus, vm.memory_bytes, vm.pending) == (2, GiB + 512 * MiB, {})
        until_seen(vm, lambda r: r["cpus"] == 2 and r["memkib"] >= first["memkib"] + 400 * 1024,
                   "a second CPU and 512 MiB more")

        run(vm_devices.request_add_disk(actor, vm, size_bytes=64 * MiB), run_tasks)
        until_seen(vm, lambda r: r["disks"].get("vdb") == 64 * MiB, "a 64 MiB vdb")
        run(vm_devices.request_grow_disk(actor, vm, vm.disks.get(index=1), 128 * MiB), run_tasks)
        until_seen(vm, lambda r: r["disks"].get("vdb") == 128 * MiB, "vdb grown to 128 MiB online")

        image = import_qcow2(actor, run_tasks, web_server, 32 * MiB)
        run(vm_devices.request_add_disk(actor, vm, image=image), run_tasks)
        until_seen(vm, lambda r: r["disks"].get("vdc") == 32 * MiB, "a copy of the imported image as vdc")

        lan = Network.objects.create(cluster=qemu_cluster, name="lan", cidr="10.0.2.0/24")
        run(vm_devices.request_add_nic(actor, vm, lan), run_tasks)
        run(vm_devices.request_add_nic(actor, vm, lan), run_tasks)
        until_seen(vm, lambda r: len(r["nics"]) == 3, "two new network interfaces")
        # Its customization never reports (the guest has no route to the console): the last NIC would stay.
        run(vm_devices.request_remove_nic(actor, vm, vm.nics.get(index=0)), run_tasks)
        until_seen(vm, lambda r: len(r["nics"]) == 2, "one of them gone again")

        # Beyond the maxima: pending, applied at the next power cycle.
        task = run(vm_edit.request_update(actor, vm, {"memory_bytes": 3 * GiB}), run_tasks)
        assert "next power cycle" in task.message
        vm.refresh_from_db()
        assert vm.pending == {"vcpus": 2, "memory_bytes": 3 * GiB}
        run(power.request_power(actor, vm, "power-off"), run_tasks)
        vm.refresh_from_db()
        assert (vm.memory_bytes, vm.pending) == (3 * GiB, {})
    except AssertionError:
        print(f"--- serial console of {vm.name}\n{serial_console(vm)[-6000:]}")
        raise
    finally:
        if driver.state(vm) == "on":
            driver.power(vm, "power-off")


def test_a_domain_made_with_virsh_define_is_adopted_and_powered_by_facet(qemu_cluster, actor, run_tasks,
                                                                        monkeypatch):
    monkeypatch.setattr(sending, "send", lambda task: None)
    host = Host.objects.get(cluster=qemu_cluster)
    Network.objects.create(cluster=qemu_cluster, name="lan", cidr="10.0.2.0/24")
    storage_container = qemu_cluster.storage_containers.get()
    disk = storage_container.resolve("legacy/root.qcow2")
    disk.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "32M"], check=True)
    name, domain_uuid = domain_name("legacy"), str(uuid.uuid4())
    xml = disk.parent / "domain.xml"
    xml.write_text(f"""<domain type='{libvirt_type()}'><name>{name}</name><uuid>{domain_uuid}</uuid>
      <memory unit='MiB'>96</memory><vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>
      <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
      <target dev='vda' bus='virtio'/></disk><interface type='user'><mac address='52:54:00:de:ad:01'/>
      <model type='virtio'/></interface></devices></domain>""")
    subprocess.run(["virsh", "-c", host.driver_uri, "define", str(xml)], check=True, capture_output=True)
    try:
        listed = {d["uuid"]: d for d in adopt.unmanaged(host)}
        assert listed[domain_uuid]["problems"] == [] and listed[domain_uuid]["name"] == name
        run(adopt.request_adopt(actor, host, domain_uuid), run_tasks)
        vm = VM.objects.select_related("host").get(uuid=domain_uuid)
        assert (vm.name, vm.power_state, vm.vcpus, vm.memory_bytes) == (name, "off", 1, 96 * MiB)
        assert (vm.disks.get().file_name, vm.disks.get().disk_format, vm.disks.get().size_bytes) == (
            "legacy/root.qcow2", "qcow2", 32 * MiB)
        assert vm.nics.get().mac == "52:54:00:de:ad:01"
        assert domain_uuid not in {d["uuid"] for d in adopt.unmanaged(host)}
        run(power.request_power(actor, vm, "power-on"), run_tasks)
        assert get_driver(host.driver_uri).state(vm) == "on"
        vm.refresh_from_db()
        run(power.request_power(actor, vm, "power-off"), run_tasks)
        assert get_driver(host.driver_uri).state(vm) == "off"
    finally:
        if not VM.objects.filter(uuid=domain_uuid).exists():  # else the cluster's teardown undefines it
            subprocess.run(["virsh", "-c", host.driver_uri, "undefine", domain_uuid], capture_output=True)


def libvirt_type() -> str:
    from console.core.drivers.libvirt import _connection, _domain_type

    return _domain_type("qemu:///system", _connection("qemu:///system"))
