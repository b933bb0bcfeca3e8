"""Self-service restore (`self-service-restore`): a user inside the guest lists the VM's snapshots and has one
attached read-only (`facet-guest-tools ssr list|attach|detach`), through the agent's link to the leader.

The leader calls `handle` (in a thread) for each `ssr` request of a session: the VM is the session's, never
one the guest names, so a guest reaches only its own VM's snapshots. Attach and detach are tasks, run at once
in the leader's thread through the task framework (`run_here`), so each is recorded as any other change; every
request, refusals included, is audited. `expire` (celery beat) detaches what outlived FACET_SSR_SECONDS, after
asking the agent to unmount it."""

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import DriverError, driver_for
from console.core.drivers.base import DiskLayer
from console.core.errors import Conflict, ServiceError
from console.core.models import Task
from console.core.tasks import Progress, create_task, run_here, task_kind
from console.models import VM, Snapshot

from ..daemon import commands
from ..models import GuestTools, RestoreDisk

CAPABILITY = "self-service-restore"
ACTIONS = ("list", "attach", "detach")


def seconds_attached() -> int:
    return int(getattr(settings, "FACET_SSR_SECONDS", 3600))


def most_attached() -> int:
    return int(getattr(settings, "FACET_SSR_MAX_DISKS", 2))


def _guest() -> Actor:
    return Actor.system()


def handle(vm_uuid: str, message: dict) -> dict:
    """The answer to one `ssr` request of the agent of VM `vm_uuid`: the fields of its reply."""
    vm = VM.objects.select_related("host", "cluster").filter(uuid=vm_uuid).first()
    action = message.get("action")
    name = str(message.get("snapshot") or "")
    try:
        if vm is None:
            raise Conflict("the VM no longer exists")
        if action not in ACTIONS:
            raise Conflict(f"unknown ssr action {action!r}; use {', '.join(ACTIONS)}")
        state = GuestTools.objects.filter(vm=vm).first()
        if state is None or CAPABILITY not in state.capabilities:
            raise Conflict(f"the {CAPABILITY} capability is off for this VM; an administrator turns it on in the "
                           "VM's Guest Tools panel")
        answer = {"list": list_snapshots, "attach": attach, "detach": detach}[action](vm, name)
    except ServiceError as error:
        why = "; ".join(" ".join(problems) for problems in error.errors.values())
        if vm is not None:
            audit.record(_guest(), "ngt.ssr.refused", vm, request=str(action), snapshot=name, reason=why)
        return {"ok": False, "error": why}
    return {"ok": True, **answer}


def list_snapshots(vm: VM, _name: str) -> dict:
    attached = dict(RestoreDisk.objects.filter(vm=vm).values_list("snapshot_id", "expires_at"))
    found = [{"name": s.name, "created_at": s.created_at.isoformat(), "description": s.description,
              "consistent": s.consistent, "attached": s.pk in attached}
             for s in vm.snapshots.filter(state=Snapshot.State.READY).order_by("created_at")]
    audit.record(_guest(), "ngt.ssr.list", vm, count=len(found))
    return {"snapshots": found}


def _snapshot_named(vm: VM, name: str) -> Snapshot:
    # Only this VM's snapshots: a name (or anything else) of another VM's snapshot is not found.
    snapshot = Snapshot.objects.filter(vm=vm, name=name).first()
    if snapshot is None:
        raise Conflict(f"VM {vm.name} has no snapshot named {name!r} (ssr list shows them)")
    return snapshot


def attach(vm: VM, name: str) -> dict:
    with transaction.atomic():
        snapshot = _snapshot_named(vm, name)
        snapshot = Snapshot.objects.select_for_update().get(pk=snapshot.pk)  # a delete waits, or is seen here
        if snapshot.state != Snapshot.State.READY:
            raise Conflict(f"snapshot {name} is {snapshot.state}; it cannot be attached")
        existing = RestoreDisk.objects.filter(snapshot=snapshot).first()
        if existing is not None:
            return _attached(existing)
        if RestoreDisk.objects.filter(vm=vm).count() >= most_attached():
            raise Conflict(f"{most_attached()} snapshots are attached to this VM already, the most at a time; "
                           "detach one first (ssr detach)")
        tag = uuid.uuid4().hex[:8]
        layers = list(snapshot.disks.select_related("disk"))
        restore = RestoreDisk.objects.create(
            vm=vm, snapshot=snapshot, expires_at=timezone.now() + timedelta(seconds=seconds_attached()),
            serials=[f"facet-ssr-{tag}-{layer.disk.index}"[:20] for layer in layers],
            file_names=[f"vms/{vm.uuid}/ssr-{tag}-{layer.disk.index}.qcow2" for layer in layers])
        task = create_task(_guest(), "ngt.ssr.attach", vm, queue=vm.host.queue, enqueue=False,
                           params={"restore": restore.pk, "snapshot": snapshot.name})
        audit.record(_guest(), "ngt.ssr.attach", vm, task=str(task.uuid), snapshot=snapshot.name,
                     serials=restore.serials)
    run_here([task])
    task.refresh_from_db()
    if task.status != Task.Status.SUCCEEDED:
        raise Conflict(f"attaching snapshot {name} failed: {task.error.split(chr(10))[0]}")
    return _attached(RestoreDisk.objects.get(pk=restore.pk))


def _attached(restore: RestoreDisk) -> dict:
    return {"snapshot": restore.snapshot.name, "serials": restore.serials,
            "expires_at": restore.expires_at.isoformat()}


def _layers(restore: RestoreDisk) -> list[tuple[DiskLayer, str]]:
    layers = list(restore.snapshot.disks.select_related("disk__storage_container"))
    return [(DiskLayer(layer.disk.index, layer.path, layer.disk_format,
                       layer.disk.storage_container.resolve(file_name)), serial)
            for layer, file_name, serial in zip(layers, restore.file_names, restore.serials, strict=True)]


def _remove(vm: VM, restore: RestoreDisk, attached: bool = True) -> None:
    """Detach the disks (when they may be attached) and delete their overlays."""
    driver = driver_for(vm)
    for layer, serial in _layers(restore):
        if attached:
            driver.detach_disk(vm, serial)
        driver.delete_disk(layer.overlay)


def undo_attach(task: Task) -> None:
    """An attach that failed leaves no disk, overlay or row (a disk the hypervisor cannot detach either is
    said in the task's error, and its overlay stays for the guest that holds it)."""
    restore = RestoreDisk.objects.select_related("vm__host", "snapshot").filter(pk=task.params["restore"]).first()
    if restore is None:
        return
    try:
        _remove(restore.vm, restore)
    except DriverError:
        if driver_for(restore.vm).state(restore.vm) != "unknown":
            raise
        _remove(restore.vm, restore, attached=False)  # the domain is gone: nothing holds the overlays
    restore.delete()


@task_kind("ngt.ssr.attach", undo=undo_attach, label="Attach Restore Disk")
def run_attach(task: Task, progress: Progress) -> str:
    restore = RestoreDisk.objects.select_related("vm__host", "snapshot").get(pk=task.params["restore"])
    driver = driver_for(restore.vm)
    for layer, serial in _layers(restore):
        progress(20, f"Attaching disk {layer.index} of snapshot {restore.snapshot.name} read-only")
        driver.attach_readonly_layer(restore.vm, layer, serial)
    return f"snapshot {restore.snapshot.name} attached read-only to {restore.vm.name} ({', '.join(restore.serials)})"


def detach(vm: VM, name: str) -> dict:
    restores = RestoreDisk.objects.filter(vm=vm).select_related("snapshot")
    if name:
        restores = restores.filter(snapshot=_snapshot_named(vm, name))
    detached = []
    for restore in restores:
        task = request_detach(_guest(), restore, reason="asked by the guest")
        run_here([task])
        task.refresh_from_db()
        if task.status != Task.Status.SUCCEEDED:
            raise Conflict(f"detaching snapshot {restore.snapshot.name} failed: {task.error.split(chr(10))[0]}")
        detached.append(restore.snapshot.name)
    return {"detached": detached}


def request_detach(actor: Actor, restore: RestoreDisk, reason: str, enqueue: bool = False) -> Task:
    vm = restore.vm
    with transaction.atomic():
        task = create_task(actor, "ngt.ssr.detach", vm, queue=vm.host.queue, enqueue=enqueue,
                           params={"restore": restore.pk, "snapshot": restore.snapshot.name})
        audit.record(actor, "ngt.ssr.detach", vm, task=str(task.uuid), snapshot=restore.snapshot.name,
                     reason=reason)
    return task


@task_kind("ngt.ssr.detach", label="Detach Restore Disk")
def run_detach(task: Task, progress: Progress) -> str:
    restore = RestoreDisk.objects.select_related("vm__host", "snapshot").filter(pk=task.params["restore"]).first()
    if restore is None:
        return "already detached"
    progress(20, f"Detaching snapshot {restore.snapshot.name}")
    _remove(restore.vm, restore)
    restore.delete()
    return f"snapshot {task.params['snapshot']} detached from {restore.vm.name}"


def expire() -> int:
    """Detach what is attached past its time (celery beat): the agent unmounts first when it can."""
    count = 0
    for restore in RestoreDisk.objects.filter(expires_at__lte=timezone.now()).select_related("vm__host", "snapshot"):
        if Task.objects.filter(kind="ngt.ssr.detach", params__restore=restore.pk,
                               status__in=(Task.Status.QUEUED, Task.Status.RUNNING)).exists():
            continue
        commands.send_command(str(restore.vm.uuid), "ssr_unmount", timeout=10,
                              arguments={"snapshot": restore.snapshot.name})
        request_detach(Actor.system(), restore, reason=f"attached for over {seconds_attached()} s", enqueue=True)
        count += 1
    return count


def snapshot_in_use(snapshot: Snapshot) -> str:
    """The VM hook: a snapshot attached for restore is not merged under the guest's feet."""
    if RestoreDisk.objects.filter(snapshot=snapshot).exists():
        return (f"snapshot {snapshot.name} is attached to its VM for self-service restore; detach it first "
                "(ssr detach in the guest)")
    return ""


def forget_restore_disks(vm: VM) -> None:
    """The VM hook before a VM goes: its restore overlays go with it."""
    driver = driver_for(vm)
    for restore in RestoreDisk.objects.filter(vm=vm).select_related("snapshot"):
        for layer, _serial in _layers(restore):
            driver.delete_disk(layer.overlay)
        restore.delete()
