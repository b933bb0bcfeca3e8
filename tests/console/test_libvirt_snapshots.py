"""Snapshots on libvirt's `test:///default` hypervisor, with real qcow2 files written and read by qemu-io:
a stopped VM's overlays, reverts and commits are qemu-img's and the definition's, all of which that hypervisor
does. It has no disk-only snapshot, block commit or hot plug of a running domain: those calls must fail
cleanly here. On real QEMU, tests/integration/test_qemu_block_commit.py takes and deletes snapshots of a running
VM (QEMU's block commit of a lower layer, and of the active layer with a pivot) and test_qemu_snapshots.py
snapshots, reverts and restores from a real guest; when the pivot may start is tested here, on a stand-in
domain."""

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from defusedxml.ElementTree import fromstring

from console.core.drivers import get_driver, libvirt_snapshots
from console.core.drivers.base import DiskLayer, DriverError
from console.core.models import Task
from console.models import VM, Host, Image, Snapshot
from console.services import power, snapshots, vms

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")

URI = "test:///default"
MiB = 1024**2


@pytest.fixture
def hosts(cluster):
    Host.objects.filter(cluster=cluster).update(driver_uri=URI)
    yield
    driver = get_driver(URI)  # test:///default keeps its domains for the life of the process
    for vm in VM.objects.all():
        driver.delete(vm)


@pytest.fixture
def vm(hosts, actor, run_tasks):
    vms.request_create_vm(actor, vms.VMSpec(name="db-1", vcpus=1, memory_bytes=256 * MiB,
                                            image=Image.objects.get(name="base-disk")))
    run_tasks()
    return VM.objects.get(name="db-1")


def defined_disk(vm: VM):
    domain = libvirt.open(URI).lookupByUUIDString(str(vm.uuid))
    disk = fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).find("devices/disk")
    return disk.find("source").get("file"), disk.find("driver").get("type")


def qemu_io(path, fmt: str, command: str) -> str:
    done = subprocess.run(["qemu-io", "-f", fmt, "-c", command, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def pattern_at(vm: VM, offset: int, byte: int) -> bool:
    """Whether the VM's disk, read through its whole chain, holds `byte` in the 4 KiB at `offset`."""
    disk = vm.disks.get()
    out = subprocess.run(["qemu-io", "-f", disk.disk_format, "-c", f"read -P {byte} {offset} 4k", str(disk.path)],
                         capture_output=True, text=True).stdout
    return "Pattern verification failed" not in out and "read 4096/4096" in out


def backing_of(path) -> str:
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True,
                                     text=True, check=True).stdout)
    return info.get("backing-filename", "")


def ended(run_tasks) -> Task:
    (task,) = run_tasks()
    return task


def test_a_stopped_vm_snapshots_reverts_and_merges_with_qcow2_files(vm, actor, run_tasks):
    base = vm.disks.get().path
    qemu_io(base, "raw", "write -P 65 1M 4k")
    snapshots.request_create(actor, vm, "first")
    assert ended(run_tasks).status == "succeeded"
    first = Snapshot.objects.get(name="first")

    overlay = vm.disks.get().path
    assert defined_disk(vm) == (str(overlay), "qcow2")
    assert backing_of(overlay) == str(base)
    assert first.size_bytes > 0 and first.consistency_note == "the VM was off"
    qemu_io(overlay, "qcow2", "write -P 66 1M 4k")
    assert pattern_at(vm, MiB, 66)

    snapshots.request_revert(actor, first)
    assert ended(run_tasks).status == "succeeded"
    assert pattern_at(vm, MiB, 65)  # the old content is back
    assert not overlay.exists()
    assert defined_disk(vm) == (str(vm.disks.get().path), "qcow2")

    qemu_io(vm.disks.get().path, "qcow2", "write -P 67 2M 4k")
    snapshots.request_delete(actor, first)
    assert ended(run_tasks).status == "succeeded"
    assert vm.disks.get().path == base  # qemu-img commit merged the overlay into it, and the VM is on it again
    assert defined_disk(vm) == (str(base), "raw")
    assert pattern_at(vm, 2 * MiB, 67) and pattern_at(vm, MiB, 65)
    assert sorted(p.name for p in base.parent.iterdir()) == ["disk0.raw"]


def test_a_child_is_committed_into_its_parent_when_the_parent_goes(vm, actor, run_tasks):
    snapshots.request_create(actor, vm, "first")
    run_tasks()
    qemu_io(vm.disks.get().path, "qcow2", "write -P 70 0 4k")
    snapshots.request_create(actor, vm, "second")
    run_tasks()
    first, second = Snapshot.objects.get(name="first"), Snapshot.objects.get(name="second")
    second_file = second.disks.get().path

    snapshots.request_delete(actor, first)
    assert ended(run_tasks).status == "succeeded"

    second.refresh_from_db()
    assert second.disks.get().file_name == f"vms/{vm.uuid}/disk0.raw"
    assert not second_file.exists()
    assert backing_of(vm.disks.get().path) == str(vm.disks.get().path.parent / "disk0.raw")
    assert pattern_at(vm, 0, 70)


def test_on_a_running_domain_the_test_hypervisor_refuses_and_nothing_is_left(vm, actor, run_tasks):
    power.request_power(actor, vm, "power-on")
    run_tasks()
    disk_file = vm.disks.get().file_name

    snapshots.request_create(actor, vm, "live")
    task = ended(run_tasks)

    assert task.status == "failed" and "taking the disk snapshot" in task.error
    assert "unsupported flags" in task.error
    assert not Snapshot.objects.exists()
    assert vm.disks.get().file_name == disk_file
    assert sorted(p.name for p in vm.disks.get().path.parent.iterdir()) == ["disk0.raw"]


def test_a_read_only_layer_needs_a_running_domain_and_hot_plug(vm, tmp_path):
    driver = get_driver(URI)
    layer = DiskLayer(0, vm.disks.get().path, "raw", tmp_path / "ssr.qcow2")
    with pytest.raises(DriverError, match="is not running"):
        driver.attach_readonly_layer(vm, layer, "ssr-1")
    driver.power(vm, "power-on")
    with pytest.raises(DriverError, match="attaching disk ssr-1 of VM db-1 failed.*not supported"):
        driver.attach_readonly_layer(vm, layer, "ssr-1")
    assert not layer.overlay.exists()


def test_a_revert_of_a_running_domain_is_refused_by_the_driver(vm):
    driver = get_driver(URI)
    driver.power(vm, "power-on")
    with pytest.raises(DriverError, match="must be off"):
        driver.revert_disks(vm, [])


def test_disk_usage_counts_the_blocks_a_file_holds(tmp_path):
    path = tmp_path / "sparse"
    with open(path, "wb") as handle:
        handle.truncate(100 * MiB)
        handle.write(b"x" * 8192)
    assert 8192 <= get_driver(URI).disk_usage(path) < MiB
    assert get_driver(URI).disk_usage(tmp_path / "missing") == 0


class CommittingDomain:
    """A running domain in an active commit of `top` into `base`, whose job QEMU has copied all of
    (`cur == end`) some polls before libvirt has seen it ready (its event comes later), as on real QEMU."""

    def __init__(self, top: Path, base: Path, ready_after_polls: int):
        self.top, self.base, self.polls, self.ready_after = top, base, 0, ready_after_polls
        self.pivoted = False

    def isActive(self):  # noqa: N802  (libvirt's names)
        return True

    def XMLDesc(self, flags):  # noqa: N802
        if flags:  # the definition: already on the base file
            return f"<domain><devices><disk><source file='{self.base}'/><driver type='raw'/><target dev='vda'/>" \
                   "</disk></devices></domain>"
        ready = "yes" if self.polls >= self.ready_after else "no"
        return f"<domain><devices><disk><source file='{self.top}'/><target dev='vda'/><backingStore>" \
               f"<source file='{self.base}'/></backingStore><mirror ready='{ready}'/></disk></devices></domain>"

    def blockCommit(self, *args):  # noqa: N802
        return 0

    def blockJobInfo(self, target, flags):  # noqa: N802
        self.polls += 1
        return {"type": 4, "bandwidth": 0, "cur": 1000, "end": 1000}

    def blockJobAbort(self, target, flags):  # noqa: N802
        if self.polls < self.ready_after:
            raise libvirt.libvirtError("block job not ready for pivot yet")
        self.pivoted = True


def test_an_active_commit_pivots_once_libvirt_sees_the_job_ready(monkeypatch, tmp_path):
    domain = CommittingDomain(tmp_path / "top.qcow2", tmp_path / "base.raw", ready_after_polls=3)
    driver = get_driver(URI)
    monkeypatch.setattr(driver, "_domain", lambda vm: domain)
    monkeypatch.setattr(libvirt_snapshots, "COMMIT_POLL_SECONDS", 0)
    driver.commit_disk(SimpleNamespace(name="db-1"), DiskLayer(0, domain.base, "raw", domain.top), active=True,
                       above=[])
    assert domain.pivoted and domain.polls == 3
