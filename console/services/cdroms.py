"""Image ISOs in a VM's CD-ROM slots."""

from pathlib import Path

from django.db import transaction

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import driver_for
from console.core.errors import Conflict, InvalidRequest
from console.core.models import Task
from console.core.tasks import Progress, create_task, task_kind

from ..models import VM, CdRom, Image
from .power import BUSY_STATES

# Media another app made and removes itself: a plain eject would leave the ISO file (the tools ISO holds
# the VM's private key) and that app's state behind.
OWNED_MEDIA = {
    CdRom.Purpose.GUEST_TOOLS: "the Guest Tools ISO; use Guest Tools Unmount, which also deletes it",
    CdRom.Purpose.CUSTOMIZATION: "the customization media; it is removed when customization ends",
}


def free_slot(vm: VM, purpose: str) -> CdRom:
    """An empty CD-ROM of the VM; one is added when none is free and the VM is off."""
    empty = vm.cdroms.filter(iso_path="").order_by("slot").first()
    if empty is not None:
        return empty
    if vm.power_state != VM.PowerState.OFF:
        raise Conflict({"slot": [f"VM {vm.name} has no empty CD-ROM and is {vm.power_state}: "
                                 "eject one, or power the VM off so that a CD-ROM can be added"]})
    last = vm.cdroms.order_by("-slot").first()
    return CdRom.objects.create(vm=vm, slot=last.slot + 1 if last else 0, purpose=purpose)


def request_insert(actor: Actor, vm: VM, image: Image, slot: int | None = None) -> Task:
    if image.kind != Image.Kind.ISO:
        raise InvalidRequest({"image": [f"{image.name} is a disk image, not an ISO"]})
    if vm.power_state in BUSY_STATES:
        raise Conflict({"vm": [f"VM {vm.name} is {vm.power_state}; wait for it to finish"]})
    with transaction.atomic():
        if slot is None:
            cdrom = free_slot(vm, CdRom.Purpose.IMAGE)
        else:
            cdrom = vm.cdroms.filter(slot=slot).first()
            if cdrom is None:
                raise InvalidRequest({"slot": [f"VM {vm.name} has no CD-ROM in slot {slot}"]})
            if cdrom.iso_path:
                raise Conflict({"slot": [f"CD-ROM {slot} holds {Path(cdrom.iso_path).name}; eject it first"]})
        cdrom.image, cdrom.iso_path, cdrom.purpose = image, str(image.path), CdRom.Purpose.IMAGE
        cdrom.save()
        task = create_task(actor, "vm.cdrom.insert", vm, queue=vm.host.queue, params={"slot": cdrom.slot})
        audit.record(actor, "vm.cdrom.insert", vm, image=image.name, slot=cdrom.slot, task=str(task.uuid))
    return task


def undo_insert(task: Task) -> None:
    CdRom.objects.filter(vm__uuid=task.entity_uuid, slot=task.params["slot"]).update(
        iso_path="", image=None, purpose="")


@task_kind("vm.cdrom.insert", undo=undo_insert, label="Insert ISO")
def run_insert(task: Task, progress: Progress) -> str:
    cdrom = CdRom.objects.select_related("vm__host").get(vm__uuid=task.entity_uuid, slot=task.params["slot"])
    driver_for(cdrom.vm).insert_cdrom(cdrom.vm, cdrom.slot, Path(cdrom.iso_path))
    return f"{Path(cdrom.iso_path).name} inserted in CD-ROM {cdrom.slot}"


def request_eject(actor: Actor, vm: VM, slot: int) -> Task:
    cdrom = vm.cdroms.filter(slot=slot).first()
    if cdrom is None:
        raise InvalidRequest({"slot": [f"VM {vm.name} has no CD-ROM in slot {slot}"]})
    if not cdrom.iso_path:
        raise Conflict({"slot": [f"CD-ROM {slot} of {vm.name} is already empty"]})
    if cdrom.purpose in OWNED_MEDIA:
        raise Conflict({"slot": [f"CD-ROM {slot} of {vm.name} holds {OWNED_MEDIA[cdrom.purpose]}"]})
    if vm.power_state in BUSY_STATES:
        raise Conflict({"vm": [f"VM {vm.name} is {vm.power_state}; wait for it to finish"]})
    with transaction.atomic():
        task = create_task(actor, "vm.cdrom.eject", vm, queue=vm.host.queue, params={"slot": slot})
        audit.record(actor, "vm.cdrom.eject", vm, slot=slot, iso=Path(cdrom.iso_path).name, task=str(task.uuid))
    return task


@task_kind("vm.cdrom.eject", label="Eject ISO")
def run_eject(task: Task, progress: Progress) -> str:
    cdrom = CdRom.objects.select_related("vm__host").get(vm__uuid=task.entity_uuid, slot=task.params["slot"])
    driver_for(cdrom.vm).eject_cdrom(cdrom.vm, cdrom.slot)
    undo_insert(task)
    return f"CD-ROM {cdrom.slot} ejected"
