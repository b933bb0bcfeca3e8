"""Snapshots on the sim hypervisor, through the services: its disk files are real sparse files, an overlay's
holes read as its backing file and a commit copies the overlay's data onto it, so what a guest would read is
checked byte for byte."""

import os
from pathlib import Path

import pytest

from console.core.errors import Conflict, InvalidRequest
from console.core.models import AuditEvent, Task
from console.models import VM, Snapshot
from console.services import snapshots, vms

MiB = 1024**2


def read_disk(files: list[Path], offset: int, length: int) -> bytes:
    """What the guest reads at `offset` of a sim disk made of `files`, top first: the top-most file holding
    data there (a hole reads as the file below)."""
    for path in files:
        with open(path, "rb") as handle:
            try:
                start = os.lseek(handle.fileno(), offset, os.SEEK_DATA)
            except OSError:
                continue
            if start <= offset:
                handle.seek(offset)
                return handle.read(length)
    return b"\0" * length


def write_disk(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def chain(vm: VM) -> list[Path]:
    """The files of the VM's first disk, from its current one down the snapshots it stands on."""
    disk = vm.disks.get(index=0)
    files = [disk.path]
    snapshot = vm.snapshots.filter(is_current=True).first()
    while snapshot is not None:
        files.append(snapshot.disks.get(disk=disk).path)
        snapshot = snapshot.parent
    return files


def take(actor, run_tasks, vm: VM, name: str, **kwargs) -> Snapshot:
    task = snapshots.request_create(actor, vm, name, **kwargs)
    run_tasks()
    task.refresh_from_db()
    assert task.status == Task.Status.SUCCEEDED, task.error
    return Snapshot.objects.get(vm=vm, name=name)


def succeeded(run_tasks) -> Task:
    (task,) = run_tasks()
    assert task.status == Task.Status.SUCCEEDED, task.error
    return task


def test_a_snapshot_freezes_the_disk_file_and_puts_an_overlay_on_it(disk_vm, actor, run_tasks):
    before = disk_vm.disks.get().path
    snapshot = take(actor, run_tasks, disk_vm, "before-upgrade", description="kernel 6.1")

    disk = disk_vm.disks.get()
    assert snapshot.disks.get().path == before  # the file the VM wrote to is the snapshot's now
    assert disk.file_name == f"vms/{disk_vm.uuid}/disk0-{snapshot.uuid.hex[:12]}.qcow2"
    assert disk.disk_format == "qcow2" and disk.path.is_file()
    assert (snapshot.state, snapshot.is_current, snapshot.parent, snapshot.description) == (
        "ready", True, None, "kernel 6.1")
    assert (snapshot.consistent, snapshot.consistency_note) == (True, "the VM was off")
    assert snapshot.size_bytes > 0  # the base image's data is in its file
    assert read_disk(chain(disk_vm), 0, 10) == b"bootsector"
    assert AuditEvent.objects.filter(action="snapshot.create", entity_uuid=disk_vm.uuid).exists()
    assert AuditEvent.objects.get(action="snapshot.taken").detail["consistent"] is True


def test_a_running_vm_without_an_agent_gets_a_crash_consistent_snapshot(disk_vm, actor, run_tasks):
    VM.objects.filter(pk=disk_vm.pk).update(power_state="on")
    from console.core.drivers import driver_for
    driver_for(disk_vm).power(disk_vm, "power-on")

    snapshot = take(actor, run_tasks, disk_vm, "live")

    assert not snapshot.consistent
    assert snapshot.consistency_note.startswith("crash-consistent: ")  # why, in the quiesce hook's words


def test_revert_brings_the_old_content_back_and_the_snapshots_form_a_tree(disk_vm, actor, run_tasks):
    first = take(actor, run_tasks, disk_vm, "first")
    write_disk(disk_vm.disks.get().path, 0, b"upgraded!!")
    second = take(actor, run_tasks, disk_vm, "second")
    assert second.parent == first
    write_disk(disk_vm.disks.get().path, 0, b"broken!!!!")
    replaced = disk_vm.disks.get().path

    snapshots.request_revert(actor, first)
    succeeded(run_tasks)

    assert read_disk(chain(disk_vm), 0, 10) == b"bootsector"
    assert not replaced.exists()  # the overlay on "second" held nobody's snapshot
    assert list(Snapshot.objects.filter(is_current=True)) == [first]
    third = take(actor, run_tasks, disk_vm, "third")
    assert [(s.name, depth) for s, depth in snapshots.tree(disk_vm)] == [("first", 0), ("second", 1), ("third", 1)]
    assert third.parent == first

    snapshots.request_revert(actor, Snapshot.objects.get(name="second"))
    succeeded(run_tasks)
    assert read_disk(chain(disk_vm), 0, 10) == b"upgraded!!"


def test_reverting_a_running_vm_needs_the_confirmation_and_powers_it_on_again(disk_vm, actor, run_tasks):
    snapshot = take(actor, run_tasks, disk_vm, "first")
    vms_power_on(disk_vm, actor, run_tasks)

    with pytest.raises(Conflict) as refused:
        snapshots.request_revert(actor, snapshot)
    assert "running state" in refused.value.errors["confirm"][0]
    assert not Task.objects.filter(kind="snapshot.revert").exists()

    snapshots.request_revert(actor, snapshot, confirm=True)
    task = succeeded(run_tasks)
    assert "powered on" in task.message
    disk_vm.refresh_from_db()
    assert disk_vm.power_state == "on"


def vms_power_on(vm, actor, run_tasks):
    from console.services import power

    power.request_power(actor, vm, "power-on")
    succeeded(run_tasks)


def test_deleting_the_current_snapshot_merges_the_disk_into_its_file(disk_vm, actor, run_tasks):
    first = take(actor, run_tasks, disk_vm, "first")
    second = take(actor, run_tasks, disk_vm, "second")
    second_file = second.disks.get().path
    overlay = disk_vm.disks.get().path
    write_disk(overlay, MiB, b"new data")

    snapshots.request_delete(actor, second)
    succeeded(run_tasks)

    disk = disk_vm.disks.get()
    assert disk.path == second_file and not overlay.exists()
    assert read_disk([second_file], MiB, 8) == b"new data"
    first.refresh_from_db()
    assert first.is_current and list(disk_vm.snapshots.all()) == [first]
    assert read_disk(chain(disk_vm), 0, 10) == b"bootsector"


def test_deleting_a_snapshot_under_another_merges_the_child_into_it(disk_vm, actor, run_tasks):
    first = take(actor, run_tasks, disk_vm, "first")
    write_disk(disk_vm.disks.get().path, 0, b"upgraded!!")
    second = take(actor, run_tasks, disk_vm, "second")
    first_file, second_file = first.disks.get().path, second.disks.get().path

    snapshots.request_delete(actor, first)
    succeeded(run_tasks)

    second.refresh_from_db()
    assert (second.parent, second.disks.get().path) == (None, first_file)
    assert not second_file.exists()
    assert read_disk(chain(disk_vm), 0, 10) == b"upgraded!!"
    snapshots.request_revert(actor, second)
    succeeded(run_tasks)
    assert read_disk(chain(disk_vm), 0, 10) == b"upgraded!!"


def test_a_snapshot_off_the_current_branch_is_deleted_with_its_files(disk_vm, actor, run_tasks):
    first = take(actor, run_tasks, disk_vm, "first")
    second = take(actor, run_tasks, disk_vm, "second")
    snapshots.request_revert(actor, first)
    succeeded(run_tasks)
    second_file = second.disks.get().path

    snapshots.request_delete(actor, second)
    succeeded(run_tasks)

    assert not second_file.exists()
    assert list(disk_vm.snapshots.all()) == [first]


def test_a_snapshot_two_things_stand_on_is_refused(disk_vm, actor, run_tasks):
    first = take(actor, run_tasks, disk_vm, "first")
    take(actor, run_tasks, disk_vm, "second")
    snapshots.request_revert(actor, first)
    succeeded(run_tasks)

    with pytest.raises(Conflict, match="snapshot second and the current disks of web-1 are built on"):
        snapshots.request_delete(actor, first)
    first.refresh_from_db()
    assert first.state == "ready"


def test_a_snapshot_is_the_source_of_full_and_linked_clones(disk_vm, actor, run_tasks):
    first = take(actor, run_tasks, disk_vm, "first")
    write_disk(disk_vm.disks.get().path, 0, b"changed!!!")

    vms.request_clone(actor, disk_vm, "full", snapshot=first)
    vms.request_clone(actor, disk_vm, "thin", snapshot=first, linked=True)
    assert all(t.status == "succeeded" for t in run_tasks())

    full, thin = VM.objects.get(name="full"), VM.objects.get(name="thin")
    assert read_disk([full.disks.get().path], 0, 10) == b"bootsector"
    assert thin.disks.get().backing_file == first.disks.get().file_name
    with pytest.raises(Conflict, match=r"backs linked clones \(thin\)"):
        snapshots.request_delete(actor, first)
    with pytest.raises(Conflict, match="back linked clones"):
        vms.request_delete(actor, disk_vm)
    other = VM.objects.get(name="full")
    with pytest.raises(InvalidRequest, match="is not a snapshot of full"):
        vms.request_clone(actor, other, "wrong", snapshot=first)


@pytest.mark.parametrize(("name", "description", "field"), [
    ("", "", "name"), ("has space", "", "name"), ("x" * 64, "", "name"), ("ok", "d" * 256, "description")])
def test_bad_input_names_the_field(disk_vm, actor, name, description, field):
    with pytest.raises(InvalidRequest) as refused:
        snapshots.request_create(actor, disk_vm, name, description)
    assert field in refused.value.errors
    assert not Snapshot.objects.exists()


def test_refusals_leave_nothing_behind(disk_vm, actor, run_tasks):
    take(actor, run_tasks, disk_vm, "first")
    with pytest.raises(Conflict, match="already has a snapshot named 'first'"):
        snapshots.request_create(actor, disk_vm, "first")
    snapshots.request_create(actor, disk_vm, "second")
    with pytest.raises(Conflict, match=r"a snapshot task \(snapshot.create\) is already queued"):
        snapshots.request_create(actor, disk_vm, "third")
    run_tasks()
    VM.objects.filter(pk=disk_vm.pk).update(is_template=True)
    disk_vm.refresh_from_db()
    with pytest.raises(Conflict, match="is a template"):
        snapshots.request_create(actor, disk_vm, "fourth")
    assert sorted(disk_vm.snapshots.values_list("name", flat=True)) == ["first", "second"]


def test_deleting_the_vm_deletes_its_snapshots_files(disk_vm, actor, run_tasks):
    first = take(actor, run_tasks, disk_vm, "first")
    files = [first.disks.get().path, disk_vm.disks.get().path]

    vms.request_delete(actor, disk_vm)
    succeeded(run_tasks)

    assert not any(path.exists() for path in files)
    assert not Snapshot.objects.exists()


def test_a_failed_snapshot_leaves_no_row_and_no_overlay(disk_vm, actor, run_tasks):
    disk_vm.disks.get().path.unlink()  # the hypervisor cannot find the disk's file

    snapshots.request_create(actor, disk_vm, "first")
    (task,) = run_tasks()

    assert task.status == "failed" and "does not exist" in task.error
    assert not Snapshot.objects.exists()
    assert list(Path(disk_vm.disks.get().path.parent).glob("*.qcow2")) == []
