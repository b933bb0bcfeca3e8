"""Volume groups: create, grow, attach, detach, delete. The request functions validate and write the intent
with its task; the run functions (one per task kind) do the work and are safe to rerun.

One writer at a time: a group has at most one attachment row. Attaching it elsewhere needs `force`, which
moves it (detaches it from where it is first). A Docker host that mounted a group is the only one that can
say it is done with it, so detaching from a Docker host is the plugin's call, or an Admin's forced one.

A caller may `wait` for a change: when its work is host-local and quick (making sparse files, deleting them,
recording an attach to or detach from a registered machine, which attaches by loop device itself), the task
runs inside the caller's request once its intent is committed, through the same lifecycle a worker gives it
(claim, heartbeat, end, undo on failure; the task row and audit record are the same). Work that needs a
hypervisor stays queued for its host's worker."""

import shutil

from django.db import IntegrityError, transaction

from console.drivers import files
from console.models import VM, StorageContainer, Task
from console.models.inventory import name_validator
from console.services import audit
from console.services.access import ADMIN, has_role
from console.services.actors import Actor
from console.services.errors import Conflict, InvalidRequest, check_field
from console.services.tasks import Progress, create_task, end_at_once, run_here, task_kind
from console.services.vms import default_cluster, driver_for
from console.units import iec

from ..models import DockerHost, VolumeGroup, VolumeGroupAttachment, VolumeGroupDisk
from .targets import Target

MIN_DISK_BYTES = 1024**2
MAX_DISK_BYTES = 64 * 1024**4
MAX_DISKS = 16
BUSY_VM_STATES = (VM.PowerState.CREATING, VM.PowerState.DELETING)


def check_size(size_bytes: int, field_name: str = "size_bytes") -> None:
    if not MIN_DISK_BYTES <= size_bytes <= MAX_DISK_BYTES:
        limits = f"{iec(MIN_DISK_BYTES)} to {iec(MAX_DISK_BYTES)}"
        raise InvalidRequest({field_name: [f"a volume group disk holds {limits}"]})


def check_free_space(container: StorageContainer, more_bytes: int, field_name: str = "size_bytes") -> None:
    """Refuse sizes the container's filesystem cannot hold, even though the files start sparse."""
    free = shutil.disk_usage(container.path).free
    if more_bytes > free:
        raise InvalidRequest({field_name: [
            f"{iec(more_bytes)} is more than storage container {container.name} has free ({iec(free)})"]})


def disk_file_name(group: VolumeGroup, index: int) -> str:
    return f"volume-groups/{group.uuid}/disk{index}.raw"


def _locked(group: VolumeGroup) -> VolumeGroup:
    """The group row locked for this transaction, with its attachment, so that two requests queue up."""
    return VolumeGroup.objects.select_for_update().select_related("container").get(pk=group.pk)


def _attachment(group: VolumeGroup) -> VolumeGroupAttachment | None:
    return (VolumeGroupAttachment.objects.select_related("vm__host", "docker_host__vm__host")
            .filter(group=group).first())


def _check_ready(group: VolumeGroup) -> None:
    if group.state != VolumeGroup.State.READY:
        raise Conflict({"volume_group": [f"volume group {group.name} is {group.state}; wait for it to finish"]})


def _disks(group: VolumeGroup) -> list[VolumeGroupDisk]:
    return list(group.disks.select_related("group__container"))


def _run_here(task: Task) -> Task:
    """Run a committed task in this request, as a worker would (see the module's note on `wait`)."""
    run_here([task])
    task.refresh_from_db()
    return task


# --- create -------------------------------------------------------------------------------------------

def request_create(actor: Actor, name: str, size_bytes: int, *, disk_count: int = 1,
                   container: StorageContainer | None = None, description: str = "", docker_volume: str = "",
                   fstype: str = "", created_by_host: DockerHost | None = None, wait: bool = False) -> Task:
    cluster = container.cluster if container else default_cluster()
    check_field(name_validator, name, "name")
    check_size(size_bytes)
    if not 1 <= disk_count <= MAX_DISKS:
        raise InvalidRequest({"disk_count": [f"a volume group has 1 to {MAX_DISKS} disks"]})
    container = container or cluster.storage_containers.first()
    if container is None:
        raise InvalidRequest({"container": ["the cluster has no storage container"]})
    check_free_space(container, size_bytes * disk_count)
    try:
        with transaction.atomic():
            group = VolumeGroup.objects.create(
                cluster=cluster, name=name, description=description, container=container,
                docker_volume=docker_volume, fstype=fstype, created_by=actor.user, created_by_host=created_by_host)
            VolumeGroupDisk.objects.bulk_create(
                VolumeGroupDisk(group=group, index=i, size_bytes=size_bytes, file_name=disk_file_name(group, i))
                for i in range(disk_count))
            task = create_task(actor, "volume-group.create", group, params=_asked_by(created_by_host),
                               enqueue=not wait)
            audit.record(actor, "volume-group.create", group, task=str(task.uuid), **_audit_host(created_by_host))
    except IntegrityError:
        raise Conflict({"name": [f"a volume group named {name!r} already exists in cluster {cluster.name}"]}) from None
    return _run_here(task) if wait else task


def _asked_by(host: DockerHost | None) -> dict:
    """Tasks a Docker host asked for carry its uuid: its token may read those tasks and no others."""
    return {"asked_by": str(host.uuid)} if host else {}


def _audit_host(host: DockerHost | None) -> dict:
    return {"docker_host": host.name} if host else {}


def _group_of(task: Task) -> VolumeGroup | None:
    return VolumeGroup.objects.select_related("container").filter(uuid=task.entity_uuid).first()


@task_kind("volume-group.create", abandon=lambda task: _remove_everywhere(_group_of(task)))
def make_disks(task: Task, progress: Progress) -> str:
    group = _group_of(task)
    if group is None:
        raise Conflict("the volume group was deleted before it was made")
    disks = _disks(group)
    for n, disk in enumerate(disks):
        progress(90 * n / len(disks), f"Making disk {disk.index}")
        files.create_sparse(disk.path, disk.size_bytes)
    VolumeGroup.objects.filter(pk=group.pk).update(state=VolumeGroup.State.READY)
    return f"{group.name} created ({len(disks)} × {iec(disks[0].size_bytes)})"


def _remove_everywhere(group: VolumeGroup | None) -> None:
    if group is None:
        return
    disks = _disks(group)
    for disk in disks:
        files.remove(disk.path)
    for directory in {disk.path.parent for disk in disks}:
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    group.delete()


# --- grow ---------------------------------------------------------------------------------------------

def request_grow(actor: Actor, group: VolumeGroup, size_bytes: int, index: int = 0) -> Task:
    """Grow one disk to a new, larger size (the file is lengthened); `where_it_shows` says who sees it when."""
    check_size(size_bytes)
    with transaction.atomic():
        group = _locked(group)
        _check_ready(group)
        disk = group.disks.filter(index=index).first()
        if disk is None:
            raise InvalidRequest({"index": [f"volume group {group.name} has no disk {index}"]})
        if size_bytes <= disk.size_bytes:
            raise InvalidRequest({"size_bytes": [f"disk {index} already holds {iec(disk.size_bytes)}; "
                                                 "a disk only grows"]})
        check_free_space(group.container, size_bytes - disk.size_bytes)
        previous = disk.size_bytes
        VolumeGroupDisk.objects.filter(pk=disk.pk).update(size_bytes=size_bytes)
        task = create_task(actor, "volume-group.grow", group, params={"index": index, "previous": previous})
        audit.record(actor, "volume-group.grow", group, task=str(task.uuid), index=index, size_bytes=size_bytes)
    return task


def _undo_grow(task: Task) -> None:
    VolumeGroupDisk.objects.filter(group__uuid=task.entity_uuid, index=task.params["index"]).update(
        size_bytes=task.params["previous"])


@task_kind("volume-group.grow", abandon=_undo_grow)
def grow_disk(task: Task, progress: Progress) -> str:
    disk = VolumeGroupDisk.objects.select_related("group__container").get(
        group__uuid=task.entity_uuid, index=task.params["index"])
    if not disk.path.is_file():
        raise Conflict(f"disk file {disk.path} has vanished; the volume group cannot grow")
    files.create_sparse(disk.path, disk.size_bytes)  # truncate only ever lengthens here
    return f"{disk.group.name} disk {disk.index} is {iec(disk.size_bytes)}; {where_it_shows(disk.group)}"


def where_it_shows(group: VolumeGroup) -> str:
    """Who sees a grown disk, and when. The hypervisor driver has no resize of a disk in use: a VM keeps the size
    it saw when the disk was attached or the VM started. A registered Docker host reads the file through a loop
    device that its plugin refreshes when it next reports usage, then grows the mounted filesystem."""
    attachment = _attachment(group)
    if attachment is None:
        return ("the plugin grows the filesystem at the next mount" if group.docker_volume
                else "whoever attaches it next sees the new size")
    target = Target.of(attachment)
    if target.hypervisor_vm is not None:
        then = "; the plugin then grows the filesystem" if attachment.docker_host_id else ""
        return f"{target.name} sees the new size at its next attach or power-on{then}"
    return f"the plugin on {target.name} grows the filesystem online at its next usage report"


# --- attach -------------------------------------------------------------------------------------------

def _check_target(group: VolumeGroup, target: Target) -> None:
    if target.docker_host is not None:
        host = target.docker_host
        if host.state != DockerHost.State.READY:
            raise Conflict({"docker_host": [f"Docker host {host.name} is not ready ({host.get_state_display()})"
                                            + (f": {host.problem}" if host.problem else "")]})
        if host.kind == DockerHost.Kind.EXTERNAL and not host.containers_seen.filter(pk=group.container_id).exists():
            raise Conflict({"docker_host": [
                f"Docker host {host.name} cannot see storage container {group.container.name} "
                f"({group.container.path}); it attaches disks by loop device over their files"]})
        if host.kind == DockerHost.Kind.VM and host.vm is None:
            raise Conflict({"docker_host": [f"the VM of Docker host {host.name} no longer exists"]})
    vm = target.hypervisor_vm
    if vm is not None:
        if vm.is_template:
            raise Conflict({"vm": [f"{vm.name} is a template"]})
        if vm.power_state in BUSY_VM_STATES:
            raise Conflict({"vm": [f"VM {vm.name} is {vm.power_state}; wait for it to finish"]})


def request_attach(actor: Actor, group: VolumeGroup, target: Target, *, force: bool = False,
                   asked_by: DockerHost | None = None, wait: bool = False) -> Task:
    """Attach the group to the target. If it is attached elsewhere, only `force` moves it (detaching it first)."""
    _check_target(group, target)
    with transaction.atomic():
        group = _locked(group)
        _check_ready(group)
        current = _attachment(group)
        if current is not None and current.state == VolumeGroupAttachment.State.DETACHING:
            # Its detach task is still to run, and would pull the disks from under a new mount.
            raise Conflict({"volume_group": [
                f"volume group {group.name} is being detached from {Target.of(current).name}; "
                "try again once that detach has finished"]})
        if current is not None and target.same_as(current) and current.state == VolumeGroupAttachment.State.ATTACHED:
            return end_at_once(actor, "volume-group.attach", group, None, Task.Status.SUCCEEDED,
                               f"{group.name} is already attached to {target.name}")
        previous = None
        if current is not None and not target.same_as(current):
            if not force:
                raise Conflict({"volume_group": [
                    f"volume group {group.name} is attached to {Target.of(current).name}: one writer at a time. "
                    "Detach it there first, or move it with force"]})
            _check_move_allowed(actor, current)
            previous = Target.of(current).params()
        here = wait and target.hypervisor_vm is None and previous is None
        if current is None:
            VolumeGroupAttachment.objects.create(group=group, vm=target.vm, docker_host=target.docker_host)
        else:
            VolumeGroupAttachment.objects.filter(pk=current.pk).update(
                vm=target.vm, docker_host=target.docker_host, state=VolumeGroupAttachment.State.ATTACHING)
        task = create_task(actor, "volume-group.attach", group, queue=target.queue, enqueue=not here, params={
            "target": target.params(), "previous": previous, **_asked_by(asked_by)})
        audit.record(actor, "volume-group.attach", group, task=str(task.uuid), target=target.name,
                     moved_from=previous, **_audit_host(asked_by))
    return _run_here(task) if here else task


def _check_move_allowed(actor: Actor, current: VolumeGroupAttachment) -> None:
    """A Docker host may have the group mounted: taking it away is an Admin's decision."""
    if current.docker_host_id and not has_role(actor.user, ADMIN):
        raise Conflict({"force": [f"moving a volume group away from Docker host {current.docker_host.name} "
                                  "needs the Admin role (its containers may still write to it)"]})


def _undo_attach(task: Task) -> None:
    target = {f"{field}__uuid": uuid for field, uuid in task.params["target"].items()}  # not another's attach
    VolumeGroupAttachment.objects.filter(
        group__uuid=task.entity_uuid, state=VolumeGroupAttachment.State.ATTACHING, **target).delete()


def _apply(target: Target, disks: list[VolumeGroupDisk], attach: bool) -> None:
    vm = target.hypervisor_vm
    if vm is None:
        return  # a registered machine attaches the files itself, by loop device
    driver = driver_for(vm)
    for disk in disks:
        if attach:
            driver.attach_disk(vm, disk.path, disk.serial)
        else:
            driver.detach_disk(vm, disk.serial)


@task_kind("volume-group.attach", abandon=_undo_attach)
def attach(task: Task, progress: Progress) -> str:
    group = _group_of(task)
    if group is None:
        raise Conflict("the volume group no longer exists")
    disks = _disks(group)
    missing = [str(disk.path) for disk in disks if not disk.path.is_file()]
    if missing:
        raise Conflict(f"disk file(s) of volume group {group.name} vanished: {', '.join(missing)}")
    target = Target.from_params(task.params["target"])
    withdrawn = Conflict(f"the attachment of {group.name} to {target.name} was withdrawn; nothing is attached")
    if not VolumeGroupAttachment.objects.filter(group=group, **target.lookup()).exists():
        raise withdrawn
    previous = Target.from_params(task.params.get("previous"))
    if previous is not None:
        progress(20, f"Detaching from {previous.name}")
        _apply(previous, disks, attach=False)
    progress(50, f"Attaching to {target.name}")
    _apply(target, disks, attach=True)
    with transaction.atomic():
        _locked(group)
        row = VolumeGroupAttachment.objects.filter(group=group, **target.lookup()).first()
        if row is None:  # no row would record these disks: another host could take the group
            _apply(target, disks, attach=False)
            raise withdrawn
        if row.state == VolumeGroupAttachment.State.ATTACHING:  # a detach asked for meanwhile stays asked for
            VolumeGroupAttachment.objects.filter(pk=row.pk).update(state=VolumeGroupAttachment.State.ATTACHED)
    return f"{group.name} attached to {target.name}"


# --- detach -------------------------------------------------------------------------------------------

def request_detach(actor: Actor, group: VolumeGroup, *, force: bool = False,
                   asked_by: DockerHost | None = None, wait: bool = False, used_bytes: int | None = None) -> Task:
    """Detach the group from where it is. From a Docker host only that host (its plugin, after unmounting)
    detaches it, unless an Admin forces it because the host no longer answers; its plugin says how much space
    the last container left used (`used_bytes`)."""
    if force and not has_role(actor.user, ADMIN):
        raise Conflict({"force": ["a forced detach needs the Admin role"]})
    with transaction.atomic():
        group = _locked(group)
        current = _attachment(group)
        if current is None:
            return end_at_once(actor, "volume-group.detach", group, None, Task.Status.SUCCEEDED,
                               f"{group.name} is not attached")
        target = Target.of(current)
        if asked_by is not None and current.docker_host_id != asked_by.pk:
            raise Conflict({"volume_group": [f"volume group {group.name} is attached to {target.name}, "
                                             f"not to Docker host {asked_by.name}"]})
        if current.docker_host_id and asked_by is None and not force:
            raise Conflict({"volume_group": [
                f"volume group {group.name} is attached to {target.name}, which mounts it: stop the containers "
                "using it there (the plugin then detaches it), or, if that host no longer answers, "
                "an Admin detaches it with force"]})
        if pending := _pending_detach(group, current, asked_by, force):
            return pending  # asked again (the plugin, past its deadline): the detach under way answers
        here = wait and target.hypervisor_vm is None
        VolumeGroupAttachment.objects.filter(pk=current.pk).update(state=VolumeGroupAttachment.State.DETACHING)
        task = create_task(actor, "volume-group.detach", group, queue=target.queue, enqueue=not here, params={
            "target": target.params(), "force": force, **_asked_by(asked_by),
            **({"used_bytes": used_bytes} if used_bytes is not None else {})})
        audit.record(actor, "volume-group.detach", group, task=str(task.uuid), target=target.name, force=force,
                     **_audit_host(asked_by))
    return _run_here(task) if here else task


def _pending_detach(group: VolumeGroup, current: VolumeGroupAttachment, asked_by: DockerHost | None,
                    force: bool) -> Task | None:
    if force or current.state != VolumeGroupAttachment.State.DETACHING:
        return None
    asker = {"params__asked_by": str(asked_by.uuid)} if asked_by else {"params__asked_by__isnull": True}
    return Task.objects.filter(kind="volume-group.detach", entity_uuid=group.uuid, params__force=False,
                               status__in=(Task.Status.QUEUED, Task.Status.RUNNING), **asker).order_by("-id").first()


@task_kind("volume-group.detach", abandon=lambda task: VolumeGroupAttachment.objects.filter(
    group__uuid=task.entity_uuid, state=VolumeGroupAttachment.State.DETACHING).update(
    state=VolumeGroupAttachment.State.ATTACHED))
def detach(task: Task, progress: Progress) -> str:
    group = _group_of(task)
    if group is None:
        return "the volume group no longer exists"
    target = Target.from_params(task.params["target"])
    ours = VolumeGroupAttachment.objects.filter(group=group, state=VolumeGroupAttachment.State.DETACHING,
                                                **target.lookup())
    if not ours.exists():  # detached by another task already, or taken back: the disks are not ours to pull
        return f"{group.name} is no longer being detached from {target.name}; nothing done"
    try:
        _apply(target, _disks(group), attach=False)
    except Exception:
        if not task.params.get("force"):
            raise
        # Forced: the host is gone or broken; the record goes anyway (the hypervisor drops it on its own).
        progress(80, f"{target.name} did not answer; detaching by force")
    ours.delete()
    VolumeGroup.objects.filter(pk=group.pk).update(
        mounts=[], used_bytes=task.params.get("used_bytes", group.used_bytes))
    return f"{group.name} detached from {target.name}" + (" (forced)" if task.params.get("force") else "")


# --- delete -------------------------------------------------------------------------------------------

def request_delete(actor: Actor, group: VolumeGroup, asked_by: DockerHost | None = None, wait: bool = False) -> Task:
    with transaction.atomic():
        group = _locked(group)
        _check_ready(group)
        current = _attachment(group)
        if current is not None:
            raise Conflict({"volume_group": [
                f"volume group {group.name} is attached to {Target.of(current).name}; detach it first"]})
        VolumeGroup.objects.filter(pk=group.pk).update(state=VolumeGroup.State.DELETING)
        task = create_task(actor, "volume-group.delete", group, params=_asked_by(asked_by), enqueue=not wait)
        audit.record(actor, "volume-group.delete", group, task=str(task.uuid), **_audit_host(asked_by))
    return _run_here(task) if wait else task


@task_kind("volume-group.delete", abandon=lambda task: VolumeGroup.objects.filter(uuid=task.entity_uuid).update(
    state=VolumeGroup.State.READY))
def delete(task: Task, progress: Progress) -> str:
    _remove_everywhere(_group_of(task))
    return f"{task.entity_name} deleted"
