"""Snapshots of a VM's disks: create, revert, delete (models/snapshots.py says how their files stack).

- create: each disk's current file becomes the snapshot's, and the disk gets a new overlay on it. While the
  VM runs, the apps' `quiesce` hooks (the Guest Tools agent's fsfreeze) wrap the moment of the snapshot.
- revert: the VM (powered off first, when the caller confirms that its running state is lost) gets new
  overlays over the snapshot's files; its previous overlays go. A VM that was on is powered on again.
- delete: the snapshot's files are merged with the one thing built on them (a child snapshot's files or the
  VM's current disks) by committing that layer into them; with nothing built on them they are just removed.
  A snapshot that two things are built on, or whose files back linked clones, is refused.

One snapshot task at a time per VM; each run function is rerunnable."""

from contextlib import ExitStack
from pathlib import Path

from django.db import IntegrityError, transaction
from django.db.models import Q

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import driver_for
from console.core.drivers.base import DiskLayer
from console.core.errors import Conflict, InvalidRequest, check_field
from console.core.models import Task
from console.core.registry import Consistency, registry
from console.core.tasks import Progress, create_task, task_kind

from ..models import VM, Snapshot, SnapshotDisk, VirtualDisk
from ..models.inventory import name_validator
from .power import BUSY_STATES
from .vms import tell_powered

KINDS = ("snapshot.create", "snapshot.revert", "snapshot.delete")
ACTIVE = (Task.Status.QUEUED, Task.Status.RUNNING)
DESCRIPTION_CHARS = 255
NO_AGENT = "crash-consistent: no guest agent froze the filesystems"


def _check_vm(vm: VM) -> None:
    if vm.is_template:
        raise Conflict({"vm": [f"{vm.name} is a template: its disks back clones and never change; "
                               "snapshot the VM before making it a template, or its clones"]})
    if vm.power_state in BUSY_STATES:
        raise Conflict({"vm": [f"VM {vm.name} is {vm.power_state}; wait for it to finish"]})
    if vm.host_id is None:
        raise Conflict({"vm": [f"VM {vm.name} is not placed on a host"]})


def _lock(vm: VM) -> None:
    """Lock the VM's row for this transaction, after refusing a second snapshot task on it: two at once would
    stack overlays on files the other is moving."""
    VM.objects.select_for_update().filter(pk=vm.pk).first()
    busy = Task.objects.filter(entity_uuid=vm.uuid, kind__in=KINDS, status__in=ACTIVE).first()
    if busy is not None:
        raise Conflict({"vm": [f"a snapshot task ({busy.kind}) is already {busy.status} on VM {vm.name}; "
                               "wait for it to end"]})


def _start(actor: Actor, kind: str, snapshot: Snapshot, **params) -> Task:
    vm = snapshot.vm
    task = create_task(actor, kind, vm, queue=vm.host.queue, params={"snapshot": str(snapshot.uuid), **params})
    audit.record(actor, kind, vm, task=str(task.uuid), snapshot=snapshot.name, snapshot_uuid=str(snapshot.uuid))
    return task


def _snapshot_of(task: Task) -> Snapshot | None:
    return Snapshot.objects.select_related("vm__host", "vm__cluster", "parent").filter(
        uuid=task.params["snapshot"]).first()


def _layers_of(snapshot: Snapshot) -> list[SnapshotDisk]:
    return list(snapshot.disks.select_related("disk__storage_container"))


def _usage(snapshot: Snapshot) -> int:
    driver = driver_for(snapshot.vm)
    return sum(driver.disk_usage(layer.path) for layer in _layers_of(snapshot))


def overlay_name(disk: VirtualDisk, tag: str) -> str:
    """A new overlay of a disk beside its other files; `.qcow2` is what makes the disk's format qcow2."""
    return f"vms/{disk.vm.uuid}/disk{disk.index}-{tag}.qcow2"


# --- create ------------------------------------------------------------------------------------------------
def request_create(actor: Actor, vm: VM, name: str, description: str = "") -> Task:
    _check_vm(vm)
    check_field(name_validator, name, "name")
    if len(description) > DESCRIPTION_CHARS:
        raise InvalidRequest({"description": [f"at most {DESCRIPTION_CHARS} characters"]})
    if not vm.disks.exists():
        raise Conflict({"vm": [f"VM {vm.name} has no disks to snapshot"]})
    try:
        with transaction.atomic():
            _lock(vm)
            if Snapshot.objects.filter(vm=vm, name=name).exists():
                raise Conflict({"name": [f"VM {vm.name} already has a snapshot named {name!r}"]})
            snapshot = Snapshot.objects.create(vm=vm, name=name, description=description, created_by=actor.user,
                                               parent=Snapshot.objects.filter(vm=vm, is_current=True).first())
            return _start(actor, "snapshot.create", snapshot)
    except IntegrityError:
        raise Conflict({"name": [f"VM {vm.name} already has a snapshot named {name!r}"]}) from None


def undo_create(task: Task) -> None:
    Snapshot.objects.filter(uuid=task.params["snapshot"], state=Snapshot.State.CREATING).delete()


@task_kind("snapshot.create", undo=undo_create, label="Take Snapshot")
def run_create(task: Task, progress: Progress) -> str:
    snapshot = _snapshot_of(task)
    if snapshot is None:
        raise Conflict("the snapshot was deleted before it was taken")
    if snapshot.state != Snapshot.State.CREATING:
        return f"snapshot {snapshot.name} already taken"
    vm = snapshot.vm
    driver = driver_for(vm)
    disks = list(vm.disks.select_related("storage_container", "vm").order_by("index"))
    tag = snapshot.uuid.hex[:12]
    layers = [DiskLayer(d.index, d.path, d.disk_format, d.storage_container.resolve(overlay_name(d, tag)))
              for d in disks]
    state = driver.state(vm)
    consistency = Consistency(True, "the VM was off") if state == "off" else Consistency(False, NO_AGENT)
    progress(20, f"Taking the snapshot of {len(disks)} disk(s)")
    if state == "on":
        with ExitStack() as quiesced:
            for quiesce in registry.hooks("quiesce"):
                quiesced.enter_context(quiesce(vm, consistency))
            driver.snapshot_disks(vm, layers)
    else:
        if state == "paused":
            consistency.note = "crash-consistent: the VM was paused"
        driver.snapshot_disks(vm, layers)
    with transaction.atomic():
        for disk in disks:
            SnapshotDisk.objects.create(snapshot=snapshot, disk=disk, file_name=disk.file_name,
                                        disk_format=disk.disk_format)
            VirtualDisk.objects.filter(pk=disk.pk).update(file_name=overlay_name(disk, tag))
        Snapshot.objects.filter(vm=vm, is_current=True).update(is_current=False)
        Snapshot.objects.filter(pk=snapshot.pk).update(
            state=Snapshot.State.READY, is_current=True, consistent=consistency.consistent,
            consistency_note=consistency.note[:255], size_bytes=_usage(snapshot))
    audit.record(Actor(user=task.created_by), "snapshot.taken", vm, task=str(task.uuid), snapshot=snapshot.name,
                 consistent=consistency.consistent, note=consistency.note)
    return f"snapshot {snapshot.name} of {vm.name} taken ({consistency.note})"


# --- revert ------------------------------------------------------------------------------------------------
def _ready(snapshot: Snapshot) -> None:
    snapshot.refresh_from_db()  # the caller's copy may be older than the last task's end
    if snapshot.state != Snapshot.State.READY:
        raise Conflict({"snapshot": [f"snapshot {snapshot.name} is {snapshot.state}"]})


def _clones_backed_by(vm: VM, file_names: list[str]) -> list[str]:
    clones = VirtualDisk.objects.filter(~Q(vm=vm), backing_file__in=file_names).select_related("vm")
    return sorted({disk.vm.name for disk in clones[:20]})


def request_revert(actor: Actor, snapshot: Snapshot, confirm: bool = False) -> Task:
    vm = snapshot.vm
    _check_vm(vm)
    _ready(snapshot)
    running = vm.power_state in (VM.PowerState.ON, VM.PowerState.PAUSED)
    if running and not confirm:
        raise Conflict({"confirm": [f"VM {vm.name} is {vm.power_state}: reverting powers it off, losing its "
                                    "running state (what is in its memory and not yet on its disks); confirm to "
                                    "revert anyway"]})
    current = list(vm.disks.values_list("file_name", flat=True))
    clones = _clones_backed_by(vm, current)
    if clones:
        raise Conflict({"snapshot": [f"the current disks of {vm.name} back linked clones ({', '.join(clones)}), "
                                     "which a revert would break; delete them first"]})
    with transaction.atomic():
        _lock(vm)
        return _start(actor, "snapshot.revert", snapshot, power_on=running)


@task_kind("snapshot.revert", label="Revert to Snapshot")
def run_revert(task: Task, progress: Progress) -> str:
    snapshot = _snapshot_of(task)
    if snapshot is None:
        raise Conflict("the snapshot was deleted before the revert")
    vm = snapshot.vm
    driver = driver_for(vm)
    tag = "r" + task.uuid.hex[:11]  # the same on a rerun, so a rerun finds what it made
    layers = {layer.disk_id: layer for layer in _layers_of(snapshot)}
    disks = [d for d in vm.disks.select_related("storage_container", "vm").order_by("index") if d.pk in layers]
    if driver.state(vm) != "off":
        progress(10, f"Powering off {vm.name}")
        VM.objects.filter(pk=vm.pk).update(power_state=driver.power(vm, "power-off"))
    progress(40, f"Reverting {len(disks)} disk(s) to {snapshot.name}")
    driver.revert_disks(vm, [DiskLayer(d.index, layers[d.pk].path, layers[d.pk].disk_format,
                                       d.storage_container.resolve(overlay_name(d, tag))) for d in disks])
    replaced = []
    with transaction.atomic():
        for disk in disks:
            if disk.file_name != overlay_name(disk, tag):
                replaced.append(disk.path)  # the overlay on the previous current snapshot: no snapshot's file
                VirtualDisk.objects.filter(pk=disk.pk).update(file_name=overlay_name(disk, tag))
        Snapshot.objects.filter(vm=vm, is_current=True).exclude(pk=snapshot.pk).update(is_current=False)
        Snapshot.objects.filter(pk=snapshot.pk).update(is_current=True)
    for path in replaced:
        driver.delete_disk(path)
    if task.params.get("power_on"):
        progress(80, f"Powering on {vm.name}")
        state = driver.power(vm, "power-on")
        VM.objects.filter(pk=vm.pk).update(power_state=state)
        tell_powered([(vm, state)])
    return f"{vm.name} reverted to snapshot {snapshot.name}" + (" and powered on" if task.params.get("power_on")
                                                                 else "")


# --- delete ------------------------------------------------------------------------------------------------
def _built_on(snapshot: Snapshot) -> list[str]:
    """What stands on the snapshot's files: its child snapshots, and the VM's current disks."""
    built = [f"snapshot {child.name}" for child in snapshot.children.all()]
    return built + ([f"the current disks of {snapshot.vm.name}"] if snapshot.is_current else [])


def request_delete(actor: Actor, snapshot: Snapshot) -> Task:
    vm = snapshot.vm
    _check_vm(vm)
    _ready(snapshot)
    built = _built_on(snapshot)
    if len(built) > 1:
        raise Conflict({"snapshot": [f"{' and '.join(built)} are built on snapshot {snapshot.name}, which can be "
                                     "merged into one of them only: delete the others first"]})
    for in_use in registry.hooks("snapshot_in_use"):
        why = in_use(snapshot)
        if why:
            raise Conflict({"snapshot": [why]})
    merged = [layer.file_name for layer in _layers_of(snapshot)]
    for child in snapshot.children.all():
        merged += [layer.file_name for layer in _layers_of(child)]
    if snapshot.is_current:
        merged += list(vm.disks.values_list("file_name", flat=True))
    clones = _clones_backed_by(vm, merged)
    if clones:
        raise Conflict({"snapshot": [f"snapshot {snapshot.name} backs linked clones ({', '.join(clones)}); "
                                     "delete them first"]})
    with transaction.atomic():
        _lock(vm)
        Snapshot.objects.filter(pk=snapshot.pk).update(state=Snapshot.State.DELETING)
        return _start(actor, "snapshot.delete", snapshot)


def undo_delete(task: Task) -> None:
    """A delete that failed before any merge began leaves the snapshot as it was. Once a merge began, its files
    hold part of what is above them: it stays `deleting`, and the task's rerun finishes the merge."""
    if not task.params.get("merging"):
        Snapshot.objects.filter(uuid=task.params["snapshot"], state=Snapshot.State.DELETING).update(
            state=Snapshot.State.READY)


@task_kind("snapshot.delete", undo=undo_delete, label="Delete Snapshot")
def run_delete(task: Task, progress: Progress) -> str:
    snapshot = _snapshot_of(task)
    if snapshot is None:
        return "already deleted"
    vm = snapshot.vm
    driver = driver_for(vm)
    own = _layers_of(snapshot)
    child = snapshot.children.first()
    removed: list[Path] = []
    if child is None and not snapshot.is_current:
        removed = [layer.path for layer in own]
    else:
        Task.objects.filter(pk=task.pk).update(params={**task.params, "merging": True})
        task.params["merging"] = True
        above = _above(snapshot, child)
        on_child = _built_on_files(child) if child is not None else {}
        for n, layer in enumerate(own):
            progress(10 + 80 * n / len(own), f"Merging disk {layer.disk.index} into {snapshot.name}'s file")
            top = above.get(layer.disk_id)
            if top is not None and top != layer.path:
                driver.commit_disk(vm, DiskLayer(layer.disk.index, layer.path, layer.disk_format, top),
                                   active=child is None, above=on_child.get(layer.disk_id, []))
                removed.append(top)
    with transaction.atomic():
        for layer in own:
            if child is not None:
                SnapshotDisk.objects.filter(snapshot=child, disk=layer.disk).update(
                    file_name=layer.file_name, disk_format=layer.disk_format)
            elif snapshot.is_current:
                VirtualDisk.objects.filter(pk=layer.disk_id).update(file_name=layer.file_name)
        if child is not None:
            Snapshot.objects.filter(pk=child.pk).update(parent=snapshot.parent)
        Snapshot.objects.filter(pk=snapshot.pk).delete()
        if child is None and snapshot.is_current and snapshot.parent is not None:
            Snapshot.objects.filter(pk=snapshot.parent.pk).update(is_current=True)
    for path in removed:
        driver.delete_disk(path)
    if child is not None:
        Snapshot.objects.filter(pk=child.pk).update(size_bytes=_usage(child))
    return f"snapshot {snapshot.name} of {vm.name} deleted" + (" and merged" if child or snapshot.is_current else "")


def _above(snapshot: Snapshot, child: Snapshot | None) -> dict[int, Path]:
    """By disk id, the file built on the snapshot's file: the child's, or the VM's current disk."""
    if child is not None:
        return {layer.disk_id: layer.path for layer in _layers_of(child)}
    return {disk.pk: disk.path for disk in snapshot.vm.disks.select_related("storage_container")}


def _built_on_files(snapshot: Snapshot) -> dict[int, list[Path]]:
    """By disk id, every file whose backing file is the snapshot's: its children's, and the VM's current disk
    when the snapshot is current."""
    found: dict[int, list[Path]] = {}
    for child in snapshot.children.all():
        for layer in _layers_of(child):
            found.setdefault(layer.disk_id, []).append(layer.path)
    if snapshot.is_current:
        for disk in snapshot.vm.disks.select_related("storage_container"):
            found.setdefault(disk.pk, []).append(disk.path)
    return found


# --- what the inventory reads ------------------------------------------------------------------------------
def snapshot_files(vm: VM) -> list[str]:
    """The file names of all the VM's snapshots (the VM's own disks' files are on its VirtualDisk rows)."""
    return list(SnapshotDisk.objects.filter(snapshot__vm=vm).values_list("file_name", flat=True))


def tree(vm: VM) -> list[tuple[Snapshot, int]]:
    """The VM's snapshots in tree order (each after its parent, siblings by age), with their depth."""
    snapshots = list(vm.snapshots.select_related("created_by").order_by("created_at", "id"))
    children: dict[int | None, list[Snapshot]] = {}
    for snapshot in snapshots:
        children.setdefault(snapshot.parent_id, []).append(snapshot)
    ordered: list[tuple[Snapshot, int]] = []

    def walk(parent_id: int | None, depth: int) -> None:
        for snapshot in children.get(parent_id, []):
            ordered.append((snapshot, depth))
            walk(snapshot.pk, depth + 1)

    walk(None, 0)
    return ordered
