"""Real QEMU through libvirtd (`qemu:///system`): the daemons, started when they are not running (and left
running for others: there is no systemd here to own them), and a cluster whose storage container the
`libvirt-qemu` user can read."""

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import libvirt
import libvirt_qemu
import pytest
from defusedxml.ElementTree import fromstring

from console.core.drivers import files, get_driver, qemu_img
from console.core.drivers.libvirt import CONSOLE_LOG_DIR
from console.core.models import Task
from console.models import VM, Cluster, Host, Image, StorageContainer
from console.services.demo import demo_iso_bytes
from tests.realparts import wait_for

QEMU_URI = "qemu:///system"
GiB = 1024**3


def domain_name(prefix: str) -> str:
    """A VM name of this run's own: libvirt domain names are per hypervisor, and other test runs share it."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _running(name: str) -> bool:
    return subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def libvirtd():
    missing = [daemon for daemon in ("virtlogd", "libvirtd", "qemu-system-x86_64") if not shutil.which(daemon)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed (make setup installs them)")
    for daemon in ("virtlogd", "libvirtd"):  # virtlogd first: libvirtd hands it QEMU's logs
        if not _running(daemon):
            subprocess.run([daemon, "-d"], check=True)

    wait_for(lambda: answers(QEMU_URI), 60, f"libvirtd to answer on {QEMU_URI}")
    return QEMU_URI


def answers(uri: str) -> bool:
    """Whether a libvirtd answers on `uri` now."""
    try:
        libvirt.open(uri).close()
        return True
    except libvirt.libvirtError:
        return False


@pytest.fixture
def qemu_dir():
    """A directory QEMU (user libvirt-qemu) can reach: pytest's own under /tmp/pytest-of-root is 0700."""
    directory = Path(tempfile.mkdtemp(prefix="facet-qemu-", dir="/var/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def qemu_cluster(db, libvirtd, qemu_dir):
    """A cluster with one host on real QEMU, a storage container in `qemu_dir` and an ISO image; every
    domain the test made is gone afterwards."""
    cluster = Cluster.objects.create(name="qemu", virtual_ip="127.0.0.10")
    storage_container = StorageContainer.objects.create(cluster=cluster, name="default",
                                                        path=str(qemu_dir / "container"))
    Host.objects.create(cluster=cluster, name="qemu-1", address="127.0.0.1", cpus=os.cpu_count() or 2,
                        memory_bytes=8 * GiB, driver_uri=libvirtd)
    iso = storage_container.resolve("images/rescue.iso")
    iso.parent.mkdir(parents=True)
    iso.write_bytes(demo_iso_bytes())
    Image.objects.create(cluster=cluster, name="rescue-iso", kind="iso", storage_container=storage_container,
                         file_name="images/rescue.iso", size_bytes=iso.stat().st_size)
    files.create_sparse(storage_container.resolve("volumes/data.raw"), 64 * 1024**2)
    yield cluster
    driver = get_driver(libvirtd)
    for vm in VM.objects.filter(cluster=cluster):
        driver.delete(vm)


def cluster_image(cluster: Cluster, cached: Path, name: str) -> Image:
    """A cached guest disk (tests/guest_image.py) as a disk image of the cluster: a hard link into its storage
    container when that shares the file system, else a sparse copy."""
    storage_container = cluster.storage_containers.get()
    target = storage_container.resolve(f"images/{name}.raw")
    try:
        os.link(cached, target)
    except OSError:
        shutil.copyfile(cached, target)  # the build wrote it sparse; a plain copy is still correct
    return Image.objects.create(cluster=cluster, name=name, kind="disk", storage_container=storage_container,
                                file_name=f"images/{name}.raw", size_bytes=target.stat().st_size,
                                disk_format=qemu_img.inspect(target))


def serial_console(vm: VM) -> str:
    """All the guest's serial console said so far, as virtlogd logs it on this hypervisor host."""
    try:
        return (CONSOLE_LOG_DIR / f"{vm.uuid}-console.log").read_text(errors="replace")
    except OSError as exc:
        return f"(no console log: {exc})"


def run(task: Task, run_tasks) -> Task:
    run_tasks()
    task.refresh_from_db()
    assert task.status == Task.Status.SUCCEEDED, task.error
    return task


def domain_of(vm: VM):
    return libvirt.open(vm.host.driver_uri).lookupByUUIDString(str(vm.uuid))


def live_disk(vm: VM, flags: int = 0):
    return next(d for d in fromstring(domain_of(vm).XMLDesc(flags)).iter("disk") if d.get("device") == "disk")


def monitor_io(vm: VM, command: str) -> str:
    """A qemu-io command on the running guest's disk device, so on what the guest writes to: its active layer.
    QEMU prints what qemu-io says on its stderr, which is the domain's log beside the consoles'."""
    log = CONSOLE_LOG_DIR / f"{vm.name}.log"
    start = log.stat().st_size
    device = live_disk(vm).find("alias").get("name") + "/virtio-backend"  # the virtio-blk device, not its PCI proxy
    reply = libvirt_qemu.qemuMonitorCommand(domain_of(vm), f'qemu-io -d {device} "{command}"',
                                            libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
    assert reply == "", reply

    def said() -> str:
        with log.open("rb") as handle:
            handle.seek(start)
            text = handle.read().decode(errors="replace")
        return text if "ops/sec)" in text or "failed:" in text else ""  # how a read or write ends

    return wait_for(said, 10, f"qemu-io to answer {command!r} in {log}")


def write(vm: VM, byte: int, offset: int) -> None:
    out = monitor_io(vm, f"write -P {byte} {offset} 4k")
    assert f"wrote 4096/4096 bytes at offset {offset}" in out, out


def holds(read, written: dict[int, int]) -> None:
    """Every pattern written is where it was written, read by `read(command)`."""
    for offset, byte in written.items():
        out = read(f"read -P {byte} {offset} 4k")
        assert f"read 4096/4096 bytes at offset {offset}" in out and "Pattern verification failed" not in out, (
            offset, byte, out)


def file_io(path: Path, command: str) -> str:
    """A qemu-io command on a raw disk file no QEMU holds."""
    return subprocess.run(["qemu-io", "-f", "raw", "-c", command, str(path)], capture_output=True, text=True,
                          check=True).stdout
