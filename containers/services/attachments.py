"""Attaching volume groups to VMs and Docker hosts, and detaching them, as tasks (see volume_groups.py for the
request and run functions' contract, and for `wait`).

One writer at a time: a group has at most one attachment row. Attaching it elsewhere needs `force`, which
moves it (detaches it from where it is first). A Docker host that mounted a group is the only one that can
say it is done with it, so detaching from a Docker host is the plugin's call, or an Admin's forced one."""

from django.db import transaction

from console.core import audit
from console.core.access import ADMIN, has_role
from console.core.actors import Actor
from console.core.drivers import driver_for
from console.core.errors import Busy, Conflict
from console.core.models import Task
from console.core.tasks import Progress, create_task, end_at_once, task_kind

from ..models import DockerHost, VolumeGroup, VolumeGroupAttachment, VolumeGroupDisk
from .targets import Target
from .volume_groups import (
    asked_by_params,
    attachment_of,
    audit_host,
    check_ready,
    disks_of,
    group_of,
    locked,
    succeeded,
)

State = VolumeGroupAttachment.State


# --- attach -------------------------------------------------------------------------------------------

def request_attach(actor: Actor, group: VolumeGroup, target: Target, *, force: bool = False,
                   asked_by: DockerHost | None = None, wait: bool = False) -> Task:
    """Attach the group to the target. If it is attached elsewhere, only `force` moves it (detaching it first)."""
    target.check_can_take(group)
    with transaction.atomic():
        group = locked(group)
        check_ready(group)
        current = attachment_of(group)
        if current is not None and current.state == State.DETACHING:
            # Its detach task is still to run, and would pull the disks from under a new mount.
            raise Busy({"volume_group": [
                f"volume group {group.name} is being detached from {Target.of(current).name}; "
                "try again once that detach has finished"]})
        if current is not None and target.same_as(current) and current.state == State.ATTACHED:
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
        if here:
            _check_files(group, disks_of(group))
        row = {"vm": target.vm, "docker_host": target.docker_host, "state": State.ATTACHED if here else State.ATTACHING}
        if current is None:
            VolumeGroupAttachment.objects.create(group=group, **row)
        else:
            VolumeGroupAttachment.objects.filter(pk=current.pk).update(**row)
        params = {"target": target.params(), "previous": previous, **asked_by_params(asked_by)}
        if here:
            task = succeeded(actor, "volume-group.attach", group, _attached(group, target), params)
        else:
            task = create_task(actor, "volume-group.attach", group, queue=target.queue, params=params)
        audit.record(actor, "volume-group.attach", group, task=str(task.uuid), target=target.name,
                     moved_from=previous, **audit_host(asked_by))
    return task


def _check_move_allowed(actor: Actor, current: VolumeGroupAttachment) -> None:
    """A Docker host may have the group mounted: taking it away is an Admin's decision."""
    if current.docker_host_id and not has_role(actor.user, ADMIN):
        raise Conflict({"force": [f"moving a volume group away from Docker host {current.docker_host.name} "
                                  "needs the Admin role (its containers may still write to it)"]})


def _check_files(group: VolumeGroup, disks: list[VolumeGroupDisk]) -> None:
    missing = [str(disk.path) for disk in disks if not disk.path.is_file()]
    if missing:
        raise Conflict({"volume_group": [f"disk file(s) of volume group {group.name} vanished: "
                                         + ", ".join(missing)]})


def _attached(group: VolumeGroup, target: Target) -> str:
    return f"{group.name} attached to {target.name}"


def undo_attach(task: Task) -> None:
    target = {f"{field}__uuid": uuid for field, uuid in task.params["target"].items()}  # not another's attach
    VolumeGroupAttachment.objects.filter(group__uuid=task.entity_uuid, state=State.ATTACHING, **target).delete()


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


@task_kind("volume-group.attach", undo=undo_attach, label="Attach volume group")
def run_attach(task: Task, progress: Progress) -> str:
    group = group_of(task)
    if group is None:
        raise Conflict("the volume group no longer exists")
    disks = disks_of(group)
    _check_files(group, disks)
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
        locked(group)
        row = VolumeGroupAttachment.objects.filter(group=group, **target.lookup()).first()
        if row is None:  # no row would record these disks: another host could take the group
            _apply(target, disks, attach=False)
            raise withdrawn
        if row.state == State.ATTACHING:  # a detach asked for meanwhile stays asked for
            VolumeGroupAttachment.objects.filter(pk=row.pk).update(state=State.ATTACHED)
    return _attached(group, target)


# --- detach -------------------------------------------------------------------------------------------

def request_detach(actor: Actor, group: VolumeGroup, *, force: bool = False,
                   asked_by: DockerHost | None = None, wait: bool = False, used_bytes: int | None = None) -> Task:
    """Detach the group from where it is. From a Docker host only that host (its plugin, after unmounting)
    detaches it, unless an Admin forces it because the host no longer answers; its plugin says how much space
    the last container left used (`used_bytes`)."""
    if force and not has_role(actor.user, ADMIN):
        raise Conflict({"force": ["a forced detach needs the Admin role"]})
    with transaction.atomic():
        group = locked(group)
        current = attachment_of(group)
        if current is None:
            return end_at_once(actor, "volume-group.detach", group, None, Task.Status.SUCCEEDED,
                               f"{group.name} is not attached")
        target = Target.of(current)
        _check_detach_allowed(group, current, asked_by, force)
        if pending := _pending_detach(group, current, asked_by, force):
            return pending  # asked again (the plugin, past its deadline): the detach under way answers
        here = wait and target.hypervisor_vm is None
        params = {"target": target.params(), "force": force, **asked_by_params(asked_by),
                  **({"used_bytes": used_bytes} if used_bytes is not None else {})}
        if here:
            _forget(group, current, used_bytes)
            task = succeeded(actor, "volume-group.detach", group, _detached(group, target, force), params)
        else:
            VolumeGroupAttachment.objects.filter(pk=current.pk).update(state=State.DETACHING)
            task = create_task(actor, "volume-group.detach", group, queue=target.queue, params=params)
        audit.record(actor, "volume-group.detach", group, task=str(task.uuid), target=target.name, force=force,
                     **audit_host(asked_by))
    return task


def _check_detach_allowed(group: VolumeGroup, current: VolumeGroupAttachment, asked_by: DockerHost | None,
                          force: bool) -> None:
    target = Target.of(current)
    if asked_by is not None and current.docker_host_id != asked_by.pk:
        raise Conflict({"volume_group": [f"volume group {group.name} is attached to {target.name}, "
                                         f"not to Docker host {asked_by.name}"]})
    if current.docker_host_id and asked_by is None and not force:
        raise Conflict({"volume_group": [
            f"volume group {group.name} is attached to {target.name}, which mounts it: stop the containers "
            "using it there (the plugin then detaches it), or, if that host no longer answers, "
            "an Admin detaches it with force"]})
    if current.state == State.ATTACHING and not force:
        # Its attach task is still to run. Forced (its worker may be gone for good), the detach goes ahead: the
        # attach, if it runs after all, finds the row detaching and leaves the detach to undo it.
        raise Busy({"volume_group": [f"volume group {group.name} is being attached to {target.name}; "
                                     "try again once that attach has finished"]})


def _pending_detach(group: VolumeGroup, current: VolumeGroupAttachment, asked_by: DockerHost | None,
                    force: bool) -> Task | None:
    if force or current.state != State.DETACHING:
        return None
    asker = {"params__asked_by": str(asked_by.uuid)} if asked_by else {"params__asked_by__isnull": True}
    return Task.objects.filter(kind="volume-group.detach", entity_uuid=group.uuid, params__force=False,
                               status__in=(Task.Status.QUEUED, Task.Status.RUNNING), **asker).order_by("-id").first()


def _forget(group: VolumeGroup, attachment: VolumeGroupAttachment, used_bytes: int | None) -> None:
    """The record of a detach done: no attachment, no containers, the space the last one left used."""
    VolumeGroupAttachment.objects.filter(pk=attachment.pk).delete()
    VolumeGroup.objects.filter(pk=group.pk).update(
        mounts=[], used_bytes=group.used_bytes if used_bytes is None else used_bytes)


def _detached(group: VolumeGroup, target: Target, force: bool) -> str:
    return f"{group.name} detached from {target.name}" + (" (forced)" if force else "")


def undo_detach(task: Task) -> None:
    VolumeGroupAttachment.objects.filter(group__uuid=task.entity_uuid, state=State.DETACHING).update(
        state=State.ATTACHED)


@task_kind("volume-group.detach", undo=undo_detach, label="Detach volume group")
def run_detach(task: Task, progress: Progress) -> str:
    group = group_of(task)
    if group is None:
        return "the volume group no longer exists"
    target = Target.from_params(task.params["target"])
    ours = VolumeGroupAttachment.objects.filter(group=group, state=State.DETACHING, **target.lookup()).first()
    if ours is None:  # detached by another task already, or taken back: the disks are not ours to pull
        return f"{group.name} is no longer being detached from {target.name}; nothing done"
    try:
        _apply(target, disks_of(group), attach=False)
    except Exception:
        if not task.params.get("force"):
            raise
        # Forced: the host is gone or broken; the record goes anyway (the hypervisor drops it on its own).
        progress(80, f"{target.name} did not answer; detaching by force")
    _forget(group, ours, task.params.get("used_bytes"))
    return _detached(group, target, task.params.get("force", False))
