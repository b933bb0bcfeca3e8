"""Snapshots deleted while the VM runs, on real QEMU (`qemu:///system`, TCG where KVM does not work): QEMU's
block commit of a lower layer, and of the active layer with a pivot. The VM has no operating system (its
firmware waits for a boot device), which is all a block job needs; the test writes a pattern of its own into
the running disk at each step through QEMU's monitor (`qemu-io` over HMP, on the guest's virtio device), so
that every file of the chain holds data of its own, and reads the disk after the last merge. A real guest
taking and reverting snapshots is tests/integration/test_qemu_snapshots.py (minutes); this one takes seconds."""

import json
import subprocess
from pathlib import Path

import pytest

from console.core.drivers import get_driver
from console.core.tasks import sending
from console.models import VM, Snapshot
from console.services import power, snapshots, vms
from tests.integration.conftest import domain_name, file_io, holds, live_disk, monitor_io, run, write

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
pytestmark = pytest.mark.slow
MiB, KiB = 1024**2, 1024


def live_chain(vm: VM) -> list[tuple[str, str]]:
    """The running disk's files and formats, from its active layer down its backing chain."""
    disk = live_disk(vm)
    chain = [(disk.find("source").get("file"), disk.find("driver").get("type"))]
    backing = disk.find("backingStore")
    while backing is not None and backing.find("source") is not None:
        chain.append((backing.find("source").get("file"), backing.find("format").get("type")))
        backing = backing.find("backingStore")
    return chain


def backing_file(path: Path) -> str:
    """The backing file a qcow2 file's header names (read while QEMU holds the file: `-U`)."""
    info = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], capture_output=True, text=True,
                          check=True).stdout
    return json.loads(info).get("backing-filename", "")


def agrees_with_the_console(vm: VM) -> None:
    """The running domain's chain is the one the console's rows name: the disk's file, then each snapshot's,
    newest first (the snapshots here are a line, each the child of the one before)."""
    disk = vm.disks.get()
    rows = [(str(disk.path), disk.disk_format)] + [
        (str(layer.path), layer.disk_format)
        for layer in (snapshot.disks.get() for snapshot, _ in reversed(snapshots.tree(vm)))]
    assert live_chain(vm) == rows
    defined = live_disk(vm, libvirt.VIR_DOMAIN_XML_INACTIVE)  # what the next power-on runs
    assert (defined.find("source").get("file"), defined.find("driver").get("type")) == rows[0]


def chain_is_linked(vm: VM) -> None:
    """Each overlay's header names the file below it in the running chain: a cold start finds the same chain."""
    chain = [path for path, _ in live_chain(vm)]
    assert [backing_file(Path(path)) for path in chain[:-1]] == chain[1:]


@pytest.mark.parametrize("order", [
    ("s1", "s2"),  # s1 first: s2's file is a lower layer, committed without a pivot; then s2: the active layer
    ("s2", "s1"),  # s2 first: the active layer, pivoted onto s2's qcow2 file; then s1: the active layer again
])
def test_snapshots_of_a_running_vm_are_merged_by_block_commits_and_lose_no_data(
        qemu_cluster, actor, run_tasks, monkeypatch, order):
    monkeypatch.setattr(sending, "send", lambda task: None)  # run_tasks runs them here
    spec = vms.VMSpec(name=domain_name("commit"), vcpus=1, memory_bytes=128 * MiB, disk_sizes=[16 * MiB],
                      power_on=True)
    vm = VM.objects.select_related("host").get(uuid=run(vms.request_create_vm(actor, spec), run_tasks).entity_uuid)
    driver = get_driver(vm.host.driver_uri)
    base = vm.disks.get().path
    written: dict[int, int] = {}

    def step(byte: int, offset: int) -> None:
        write(vm, byte, offset)
        written[offset] = byte

    try:
        assert driver.state(vm) == "on"
        step(0x11, 0)  # into disk0.raw
        run(snapshots.request_create(actor, vm, "s1"), run_tasks)
        step(0x22, 64 * KiB)  # into s1's overlay
        run(snapshots.request_create(actor, vm, "s2"), run_tasks)
        step(0x33, 128 * KiB)  # into s2's overlay, the active layer
        step(0x44, 0)  # over what disk0.raw holds
        s1, s2 = Snapshot.objects.get(name="s1"), Snapshot.objects.get(name="s2")
        assert (s1.consistent, s1.consistency_note) == (False, "crash-consistent: the vss-snapshot capability is off")
        assert (s1.disks.get().path, vm.disks.get().disk_format) == (base, "qcow2")
        overlays = {"s1": s2.disks.get().path, "s2": vm.disks.get().path}  # what each snapshot's delete merges
        agrees_with_the_console(vm)
        assert [path for path, _ in live_chain(vm)] == [str(overlays["s2"]), str(overlays["s1"]), str(base)]
        chain_is_linked(vm)

        for n, name in enumerate(order):
            run(snapshots.request_delete(actor, Snapshot.objects.get(vm=vm, name=name)), run_tasks)
            assert driver.state(vm) == "on"
            assert not Snapshot.objects.filter(vm=vm, name=name).exists() and not overlays[name].exists()
            agrees_with_the_console(vm)
            assert str(overlays[name]) not in dict(live_chain(vm)) and len(live_chain(vm)) == 2 - n
            chain_is_linked(vm)
            step(0x55 + n * 0x11, (192 + n * 64) * KiB)  # into the active layer the guest now runs on
            holds(lambda command: monitor_io(vm, command), written)

        assert live_chain(vm) == [(str(base), "raw")]
        assert (vm.disks.get().path, vm.disks.get().disk_format) == (base, "raw")
        assert sorted(p.name for p in base.parent.iterdir()) == ["disk0.raw"]
    finally:
        if driver.state(vm) == "on":
            run(power.request_power(actor, vm, "power-off"), run_tasks)

    # The file the console names, off the running domain: nothing a commit lost.
    holds(lambda command: file_io(base, command), written)
    run(vms.request_delete(actor, vm), run_tasks)
    assert not base.exists()
