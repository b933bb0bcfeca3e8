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
    CdRom.Purpose.CUSTOMIZATION: "the customization media, removed as soon as the guest reports its result",
}


def free_slot(vm: VM, purpose: str) -> CdRom:
    """An empty CD-ROM of the VM, or a new drive where its hypervisor's buses take one now: any slot while the
    VM is off (or being created), on a running VM only one that can be hot-plugged. Inside a transaction: the
    VM's row is locked first, so that two requests for a slot of one VM take turns."""
    cdrom = _free_slots([vm], purpose)[vm.pk]
    if cdrom.pk is None:
        cdrom.save()
    return cdrom


def fill_slots(media: dict[VM, str], purpose: str) -> dict[int, int]:
    """Put each VM's medium (an ISO path the app made) in a `free_slot` of it, with a statement per VM at most
    (a batch of clones); the slot, by VM id. Inside a transaction; raises the first VM's Conflict, if any."""
    slots = _free_slots(list(media), purpose)
    new = []
    for vm, iso_path in media.items():
        cdrom = slots[vm.pk]
        cdrom.iso_path, cdrom.image, cdrom.purpose = iso_path, None, purpose
        if cdrom.pk is None:
            new.append(cdrom)
        else:
            CdRom.objects.filter(pk=cdrom.pk).update(iso_path=iso_path, image=None, purpose=purpose)
    CdRom.objects.bulk_create(new)
    return {vm_pk: cdrom.slot for vm_pk, cdrom in slots.items()}


def _free_slots(vms: list[VM], purpose: str) -> dict[int, CdRom]:
    """`free_slot` of each VM, by VM id, its new drives not yet saved."""
    list(VM.objects.select_for_update().filter(pk__in=[vm.pk for vm in vms]).order_by("pk").values_list("pk"))
    cdroms: dict[int, list[CdRom]] = {vm.pk: [] for vm in vms}
    for cdrom in CdRom.objects.filter(vm__in=vms).order_by("vm_id", "slot"):
        cdroms[cdrom.vm_id].append(cdrom)
    return {vm.pk: next((cdrom for cdrom in cdroms[vm.pk] if not cdrom.iso_path), None)
            or _new_drive(vm, cdroms[vm.pk], purpose) for vm in vms}


def _new_drive(vm: VM, cdroms: list[CdRom], purpose: str) -> CdRom:
    running = vm.power_state not in (VM.PowerState.OFF, VM.PowerState.CREATING)
    slot = driver_for(vm).new_cdrom_slot({cdrom.slot for cdrom in cdroms}, running)
    if slot is None:
        holding = "; ".join(f"CD-ROM {cdrom.slot} holds {_what_holds(cdrom)}" for cdrom in cdroms)
        if running:
            raise Conflict({"slot": [
                f"VM {vm.name} is {vm.power_state} and has no empty CD-ROM ({holding}), and its hypervisor cannot "
                "add a drive to it while it runs: power the VM off (a drive is then added), or free a CD-ROM"]})
        raise Conflict({"slot": [f"VM {vm.name} has all its {len(cdroms)} CD-ROMs in use ({holding}): free one"]})
    return CdRom(vm=vm, slot=slot, purpose=purpose)


def _what_holds(cdrom: CdRom) -> str:
    if cdrom.purpose in OWNED_MEDIA:
        return OWNED_MEDIA[cdrom.purpose]
    return f"{Path(cdrom.iso_path).name}, which you can eject"


def request_insert(actor: Actor, vm: VM, image: Image, slot: int | None = None) -> Task:
    if image.kind != Image.Kind.ISO:
        raise InvalidRequest({"image": [f"{image.name} is a disk image, not an ISO"]})
    with transaction.atomic():
        vm = VM.objects.select_for_update(of=("self",)).select_related("host").get(pk=vm.pk)  # checked again, locked
        if vm.power_state in BUSY_STATES:
            raise Conflict({"vm": [f"VM {vm.name} is {vm.power_state}; wait for it to finish"]})
        if slot is None:
            cdrom = free_slot(vm, CdRom.Purpose.IMAGE)
        else:
            cdrom = vm.cdroms.filter(slot=slot).first()
            if cdrom is None:
                raise InvalidRequest({"slot": [f"VM {vm.name} has no CD-ROM in slot {slot}"]})
            if cdrom.iso_path:
                raise Conflict({"slot": [f"CD-ROM {slot} holds {Path(cdrom.iso_path).name}; eject it first"]})
        # Taken only while still empty: a request that read the slot empty before another filled it is refused.
        if not CdRom.objects.filter(pk=cdrom.pk, iso_path="").update(
                image=image, iso_path=str(image.path), purpose=CdRom.Purpose.IMAGE):
            raise Conflict({"slot": [f"another request took CD-ROM {cdrom.slot} of {vm.name} meanwhile; try again"]})
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
