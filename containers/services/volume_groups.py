"""Volume groups: create, grow, delete (attach and detach: attachments.py). The request functions validate and
write the intent with its task; the run functions (one per task kind) do the work and are safe to rerun.

A caller may `wait` for a change whose work is quick and host-local (making sparse files, deleting them,
recording an attach to or a detach from a registered machine, which attaches by loop device itself). The
work is then done within the request's own transaction and its task is written ended, so that the change,
its task and its audit record are committed together or not at all: the volume plugin waits so, on Docker's
path, in one round trip. Work that needs a hypervisor stays queued for its host's worker."""

import contextlib
import logging

from django.db import IntegrityError, transaction

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import files
from console.core.errors import Conflict, InvalidRequest, check_field
from console.core.models import Task
from console.core.tasks import Progress, create_task, end_at_once, task_kind
from console.core.units import iec
from console.models import StorageContainer
from console.models.inventory import name_validator
from console.services.vms import MAX_DISK_BYTES, MIN_DISK_BYTES, check_free_space, default_cluster

from ..models import DockerHost, VolumeGroup, VolumeGroupAttachment, VolumeGroupDisk
from .targets import Target

MAX_DISKS = 16
log = logging.getLogger(__name__)


def check_size(size_bytes: int, field_name: str = "size_bytes") -> None:
    if not MIN_DISK_BYTES <= size_bytes <= MAX_DISK_BYTES:
        limits = f"{iec(MIN_DISK_BYTES)} to {iec(MAX_DISK_BYTES)}"
        raise InvalidRequest({field_name: [f"a volume group disk holds {limits}"]})


def disk_file_name(group: VolumeGroup, index: int) -> str:
    return f"volume-groups/{group.uuid}/disk{index}.raw"


def locked(group: VolumeGroup) -> VolumeGroup:
    """The group row locked for this transaction, so that two requests queue up."""
    return VolumeGroup.objects.select_for_update().select_related("storage_container").get(pk=group.pk)


def attachment_of(group: VolumeGroup) -> VolumeGroupAttachment | None:
    return (VolumeGroupAttachment.objects.select_related("vm__host", "docker_host__vm__host")
            .filter(group=group).first())


def check_ready(group: VolumeGroup) -> None:
    if group.state != VolumeGroup.State.READY:
        raise Conflict({"volume_group": [f"volume group {group.name} is {group.state}; wait for it to finish"]})


def disks_of(group: VolumeGroup) -> list[VolumeGroupDisk]:
    return list(group.disks.select_related("group__storage_container"))


def group_of(task: Task) -> VolumeGroup | None:
    return VolumeGroup.objects.select_related("storage_container").filter(uuid=task.entity_uuid).first()


def asked_by_params(host: DockerHost | None) -> dict:
    """Tasks a Docker host asked for carry its uuid: its token may read those tasks and no others."""
    return {"asked_by": str(host.uuid)} if host else {}


def audit_host(host: DockerHost | None) -> dict:
    return {"docker_host": host.name} if host else {}


def succeeded(actor: Actor, kind: str, group: VolumeGroup, message: str, params: dict) -> Task:
    """The task of a change done within the caller's transaction (see `wait` above)."""
    return end_at_once(actor, kind, group, None, Task.Status.SUCCEEDED, message, params)


# --- create -------------------------------------------------------------------------------------------

def request_create(actor: Actor, name: str, size_bytes: int, *, disk_count: int = 1,
                   storage_container: StorageContainer | None = None, description: str = "", docker_volume: str = "",
                   fstype: str = "", created_by_host: DockerHost | None = None, attach_to: Target | None = None,
                   wait: bool = False) -> Task:
    """A new group of `disk_count` sparse disks. `attach_to` (with `wait`, a registered machine only) attaches it
    there in the same step: a Docker host creating a volume for a container about to mount it needs no second
    request to attach it."""
    if attach_to is not None and (not wait or attach_to.hypervisor_vm is not None):
        raise ValueError("only a waited create attaches, and only to a registered machine")
    cluster = storage_container.cluster if storage_container else default_cluster()
    check_field(name_validator, name, "name")
    check_size(size_bytes)
    if not 1 <= disk_count <= MAX_DISKS:
        raise InvalidRequest({"disk_count": [f"a volume group has 1 to {MAX_DISKS} disks"]})
    storage_container = storage_container or cluster.storage_containers.first()
    if storage_container is None:
        raise InvalidRequest({"container": ["the cluster has no storage container"]})
    check_free_space(storage_container, size_bytes * disk_count)
    made: list[VolumeGroupDisk] = []
    try:
        with transaction.atomic():
            group = VolumeGroup.objects.create(
                cluster=cluster, name=name, description=description, storage_container=storage_container,
                docker_volume=docker_volume, fstype=fstype, created_by=actor.user, created_by_host=created_by_host,
                state=VolumeGroup.State.READY if wait else VolumeGroup.State.CREATING)
            disks = VolumeGroupDisk.objects.bulk_create(
                VolumeGroupDisk(group=group, index=i, size_bytes=size_bytes, file_name=disk_file_name(group, i))
                for i in range(disk_count))
            params = asked_by_params(created_by_host)
            if wait:
                _make_files(disks, made)
                attached = attach_to is not None and _attach_new(actor, group, attach_to)
                message = created(group, disks) + (f", attached to {attach_to.name}" if attached else "")
                task = succeeded(actor, "volume-group.create", group, message, params)
            else:
                task = create_task(actor, "volume-group.create", group, params=params)
            audit.record(actor, "volume-group.create", group, task=str(task.uuid), **audit_host(created_by_host))
    except BaseException as exc:
        with contextlib.suppress(Conflict):  # the error that brought us here is the one to tell
            _remove_files(made)  # nothing was committed: no file stays behind
        if isinstance(exc, IntegrityError) and VolumeGroup.objects.filter(cluster=cluster, name=name).exists():
            raise Conflict({"name": [f"a volume group named {name!r} already exists in cluster {cluster.name}"]}
                           ) from None
        raise
    return task


def _make_files(disks: list[VolumeGroupDisk], made: list[VolumeGroupDisk]) -> None:
    for disk in disks:
        made.append(disk)
        try:
            files.create_sparse(disk.path, disk.size_bytes)
        except OSError as exc:
            raise Conflict({"volume_group": [f"could not make disk file {disk.path}: {exc.strerror}"]}) from None


def _attach_new(actor: Actor, group: VolumeGroup, target: Target) -> bool:
    """Attach a group made just now, where the target can take it (else it is left for whoever mounts it)."""
    try:
        target.check_can_take(group)
    except Conflict:
        return False
    VolumeGroupAttachment.objects.create(group=group, vm=target.vm, docker_host=target.docker_host,
                                         state=VolumeGroupAttachment.State.ATTACHED)
    audit.record(actor, "volume-group.attach", group, target=target.name, at_create=True)
    return True


def created(group: VolumeGroup, disks: list[VolumeGroupDisk]) -> str:
    return f"{group.name} created ({len(disks)} × {iec(disks[0].size_bytes)})"


def undo_create(task: Task) -> None:
    _remove_everywhere(group_of(task))


@task_kind("volume-group.create", undo=undo_create, label="Create volume group")
def run_create(task: Task, progress: Progress) -> str:
    group = group_of(task)
    if group is None:
        raise Conflict("the volume group was deleted before it was made")
    disks = disks_of(group)
    for n, disk in enumerate(disks):
        progress(90 * n / len(disks), f"Making disk {disk.index}")
        files.create_sparse(disk.path, disk.size_bytes)
    VolumeGroup.objects.filter(pk=group.pk).update(state=VolumeGroup.State.READY)
    return created(group, disks)


def _remove_files(disks: list[VolumeGroupDisk]) -> None:
    try:
        for disk in disks:
            files.remove(disk.path)
        for directory in {disk.path.parent for disk in disks}:
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
    except OSError as exc:
        raise Conflict({"volume_group": [f"could not remove {exc.filename}: {exc.strerror}"]}) from None


def _remove_files_logged(disks: list[VolumeGroupDisk]) -> None:
    try:
        _remove_files(disks)
    except Conflict as exc:
        log.error("volume group deleted, but its files stay: %s", exc)


def _remove_everywhere(group: VolumeGroup | None) -> None:
    if group is None:
        return
    _remove_files(disks_of(group))
    group.delete()


# --- grow ---------------------------------------------------------------------------------------------

def request_grow(actor: Actor, group: VolumeGroup, size_bytes: int, index: int = 0) -> Task:
    """Grow one disk to a new, larger size (the file is lengthened); `where_it_shows` says who sees it when."""
    check_size(size_bytes)
    with transaction.atomic():
        group = locked(group)
        check_ready(group)
        disk = group.disks.filter(index=index).first()
        if disk is None:
            raise InvalidRequest({"index": [f"volume group {group.name} has no disk {index}"]})
        if size_bytes <= disk.size_bytes:
            raise InvalidRequest({"size_bytes": [f"disk {index} already holds {iec(disk.size_bytes)}; "
                                                 "a disk only grows"]})
        check_free_space(group.storage_container, size_bytes - disk.size_bytes)
        previous = disk.size_bytes
        VolumeGroupDisk.objects.filter(pk=disk.pk).update(size_bytes=size_bytes)
        task = create_task(actor, "volume-group.grow", group, params={"index": index, "previous": previous})
        audit.record(actor, "volume-group.grow", group, task=str(task.uuid), index=index, size_bytes=size_bytes)
    return task


def undo_grow(task: Task) -> None:
    VolumeGroupDisk.objects.filter(group__uuid=task.entity_uuid, index=task.params["index"]).update(
        size_bytes=task.params["previous"])


@task_kind("volume-group.grow", undo=undo_grow, label="Grow volume group")
def run_grow(task: Task, progress: Progress) -> str:
    disk = VolumeGroupDisk.objects.select_related("group__storage_container").get(
        group__uuid=task.entity_uuid, index=task.params["index"])
    if not disk.path.is_file():
        raise Conflict(f"disk file {disk.path} has vanished; the volume group cannot grow")
    files.create_sparse(disk.path, disk.size_bytes)  # truncate only ever lengthens here
    return f"{disk.group.name} disk {disk.index} is {iec(disk.size_bytes)}; {where_it_shows(disk.group)}"


def where_it_shows(group: VolumeGroup) -> str:
    """Who sees a grown disk, and when. The hypervisor driver has no resize of a disk in use: a VM keeps the size
    it saw when the disk was attached or the VM started. A registered Docker host reads the file through a loop
    device that its plugin refreshes when it next reports usage, then grows the mounted filesystem."""
    attachment = attachment_of(group)
    if attachment is None:
        return ("the plugin grows the filesystem at the next mount" if group.docker_volume
                else "whoever attaches it next sees the new size")
    target = Target.of(attachment)
    if target.hypervisor_vm is not None:
        then = "; the plugin then grows the filesystem" if attachment.docker_host_id else ""
        return f"{target.name} sees the new size when it is next attached or powered on{then}"
    return f"the plugin on {target.name} grows the filesystem online at its next usage report"


# --- delete -------------------------------------------------------------------------------------------

def request_delete(actor: Actor, group: VolumeGroup, asked_by: DockerHost | None = None, wait: bool = False) -> Task:
    """A Docker host (`asked_by`) deletes only a group it created; a share lets others use it, not remove it."""
    with transaction.atomic():
        group = locked(group)
        if asked_by is not None and group.created_by_host_id != asked_by.pk:
            raise Conflict({"volume_group": [
                f"Docker volume {group.docker_volume} was not created by Docker host {asked_by.name}, so it may use "
                "it but not remove it; remove it in the console"]})
        check_ready(group)
        current = attachment_of(group)
        if current is not None:
            raise Conflict({"volume_group": [
                f"volume group {group.name} is attached to {Target.of(current).name}; detach it first"]})
        if wait:
            task = succeeded(actor, "volume-group.delete", group, f"{group.name} deleted", asked_by_params(asked_by))
            disks = disks_of(group)
            group.delete()
            # The files go once the rows are gone for good: a failure then leaves an orphan file, never a
            # group whose disk has vanished.
            transaction.on_commit(lambda: _remove_files_logged(disks))
        else:
            VolumeGroup.objects.filter(pk=group.pk).update(state=VolumeGroup.State.DELETING)
            task = create_task(actor, "volume-group.delete", group, params=asked_by_params(asked_by))
        audit.record(actor, "volume-group.delete", group, task=str(task.uuid), **audit_host(asked_by))
    return task


def undo_delete(task: Task) -> None:
    VolumeGroup.objects.filter(uuid=task.entity_uuid).update(state=VolumeGroup.State.READY)


@task_kind("volume-group.delete", undo=undo_delete, label="Delete volume group")
def run_delete(task: Task, progress: Progress) -> str:
    _remove_everywhere(group_of(task))
    return f"{task.entity_name} deleted"
