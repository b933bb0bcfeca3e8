"""A VM's disks and NICs after it was made: add (an empty disk, or a copy or linked clone of a disk image),
grow (online: the guest sees the new size at once), remove (detach, keeping the data as a disk image, or
delete); NICs added and removed while running, moved to another network; each a task, audited.

The request functions check everything, then write the intended rows with the task in one transaction; the
run functions are rerunnable; a failed add leaves no row and no file."""

from pathlib import Path

from django.db import IntegrityError, transaction
from django.db.models import Max, Q

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import driver_for
from console.core.errors import Conflict, InvalidRequest
from console.core.models import Task
from console.core.registry import registry
from console.core.tasks import Progress, create_task, task_kind
from console.core.units import iec

from ..models import VM, Image, Network, Nic, StorageContainer, VirtualDisk
from ..models.inventory import DiskFormat
from . import addressing
from .power import BUSY_STATES
from .vms import MAX_DISK_BYTES, MIN_DISK_BYTES, disk_file_name, image_disk_size


def _ready(vm: VM) -> None:
    if vm.power_state in BUSY_STATES:
        raise Conflict({"vm": [f"VM {vm.name} is {vm.power_state}; wait for it to finish"]})
    if vm.host is None:
        raise Conflict({"host": [f"VM {vm.name} is not placed on a host"]})



def disk_serial(disk: VirtualDisk) -> str:
    """What the guest sees as the disk's serial (/dev/disk/by-id/virtio-SERIAL): virtio takes 20 characters."""
    return disk.uuid.hex[:20]


def linked_clones_of(disk: VirtualDisk) -> list[str]:
    """The VMs whose disks are overlays of this one."""
    users = VirtualDisk.objects.filter(~Q(vm=disk.vm), storage_container=disk.storage_container,
                                       backing_file=disk.file_name)
    return sorted({d.vm.name for d in users.select_related("vm")})


def _not_a_base(disk: VirtualDisk, change: str) -> None:
    clones = linked_clones_of(disk)
    if clones:
        raise Conflict({"disk": [f"{change} disk {disk.index} of {disk.vm.name} would change what its linked "
                                 f"clones ({', '.join(clones[:5])}) read as their base disk; delete or fully "
                                 "clone them first"]})


def _check_size(size_bytes, field: str = "size_bytes") -> int:
    if not isinstance(size_bytes, int) or not MIN_DISK_BYTES <= size_bytes <= MAX_DISK_BYTES:
        raise InvalidRequest({field: [f"a disk holds {iec(MIN_DISK_BYTES)} to {iec(MAX_DISK_BYTES)}"]})
    return size_bytes


# Disks


def request_add_disk(actor: Actor, vm: VM, *, size_bytes: int | None = None, image: Image | None = None,
                     linked: bool = False, storage_container: StorageContainer | None = None) -> Task:
    _ready(vm)
    if image is not None:
        if image.kind != Image.Kind.DISK:
            raise InvalidRequest({"image": [f"{image.name} is an ISO; insert it in a CD-ROM instead"]})
        if image.cluster_id != vm.cluster_id:
            raise InvalidRequest({"image": [f"image {image.name} is not in cluster {vm.cluster.name}"]})
        minimum = image_disk_size(image)
        size_bytes = minimum if size_bytes is None else size_bytes
        if _check_size(size_bytes) < minimum:
            raise InvalidRequest({"size_bytes": [f"image {image.name} holds a disk of {iec(minimum)}: the new disk "
                                                 "needs at least that"]})
    elif linked:
        raise InvalidRequest({"linked": ["a linked clone needs the disk image it is made of"]})
    elif size_bytes is None:
        raise InvalidRequest({"size_bytes": ["give the size of the new empty disk, or a disk image to copy"]})
    else:
        _check_size(size_bytes)
    storage_container = storage_container or (image.storage_container if image else None) or \
        vm.cluster.storage_containers.first()
    if storage_container is None or storage_container.cluster_id != vm.cluster_id:
        raise InvalidRequest({"storage_container": [f"choose a storage container of cluster {vm.cluster.name}"]})
    if linked and storage_container != image.storage_container:
        raise InvalidRequest({"storage_container": [
            f"a linked clone lives beside its base: image {image.name} is in {image.storage_container.name}"]})
    try:
        with transaction.atomic():
            index = (vm.disks.aggregate(top=Max("index"))["top"] or 0) + 1 if vm.disks.exists() else 0
            VirtualDisk.objects.create(
                vm=vm, index=index, size_bytes=size_bytes, storage_container=storage_container,
                file_name=disk_file_name(vm, index), backing_file=image.file_name if linked else "")
            task = create_task(actor, "vm.disk.add", vm, queue=vm.host.queue, params={
                "index": index, "source": str(image.path) if image else "",
                "source_format": image.disk_format if image else "", "linked": linked})
            audit.record(actor, "vm.disk.add", vm, task=str(task.uuid), index=index, size_bytes=size_bytes,
                         image=image.name if image else None, linked=linked)
    except IntegrityError as exc:
        raise Conflict(f"another request changed the VM's disks at the same time ({exc}); try again") from None
    return task


def _disk_of(task: Task) -> VirtualDisk | None:
    return VirtualDisk.objects.select_related("storage_container", "vm__host").filter(
        vm__uuid=task.entity_uuid, index=task.params["index"]).first()


def undo_add_disk(task: Task) -> None:
    """A disk that could not be added goes: off the VM, its file and its row."""
    disk = _disk_of(task)
    if disk is None:
        return
    driver = driver_for(disk.vm)
    driver.unplug_disk(disk.vm, disk.path)
    driver.delete_disk(disk.path)
    disk.delete()


@task_kind("vm.disk.add", undo=undo_add_disk, label="Add Disk")
def run_add_disk(task: Task, progress: Progress) -> str:
    disk = _disk_of(task)
    if disk is None:
        raise Conflict("the disk was removed before it was made")
    driver = driver_for(disk.vm)
    source = task.params.get("source")
    if source:
        driver.clone_disk(Path(source), disk.path, task.params.get("linked", False),
                          progress.part(0, 80, f"Copying into disk {disk.index}"), task.params["source_format"])
    if not disk.path.is_file() or disk.path.stat().st_size < disk.size_bytes:
        driver.create_disk(disk.path, disk.size_bytes, disk.disk_format)  # a new disk, or the copy grown
    progress(90, "Attaching the disk")
    driver.plug_disk(disk.vm, disk.path, disk.disk_format, disk_serial(disk))
    return f"disk {disk.index} ({iec(disk.size_bytes)}) added to {disk.vm.name}"


def request_grow_disk(actor: Actor, vm: VM, disk: VirtualDisk, size_bytes: int) -> Task:
    _ready(vm)
    _check_size(size_bytes)
    if size_bytes <= disk.size_bytes:
        raise InvalidRequest({"size_bytes": [f"disk {disk.index} holds {iec(disk.size_bytes)}; a disk only grows "
                                             f"(shrinking would cut off the guest's data), give more than that"]})
    _not_a_base(disk, "growing")
    with transaction.atomic():
        VirtualDisk.objects.filter(pk=disk.pk).update(size_bytes=size_bytes)
        task = create_task(actor, "vm.disk.grow", vm, queue=vm.host.queue,
                           params={"index": disk.index, "size_bytes": size_bytes, "previous": disk.size_bytes})
        audit.record(actor, "vm.disk.grow", vm, task=str(task.uuid), index=disk.index, size_bytes=size_bytes,
                     before=disk.size_bytes)
    return task


def undo_grow_disk(task: Task) -> None:
    VirtualDisk.objects.filter(vm__uuid=task.entity_uuid, index=task.params["index"]).update(
        size_bytes=task.params["previous"])


@task_kind("vm.disk.grow", undo=undo_grow_disk, label="Grow Disk")
def run_grow_disk(task: Task, progress: Progress) -> str:
    disk = _disk_of(task)
    if disk is None:
        raise Conflict("the disk was removed meanwhile")
    driver_for(disk.vm).grow_disk(disk.vm, disk.path, disk.disk_format, task.params["size_bytes"])
    return f"disk {disk.index} of {disk.vm.name} grown to {iec(task.params['size_bytes'])}"


def request_remove_disk(actor: Actor, vm: VM, disk: VirtualDisk, keep: bool = False) -> Task:
    """Detach (`keep`: the file becomes a disk image named after the VM and disk) or delete a disk."""
    _ready(vm)
    first = vm.disks.order_by("index").first()
    if disk.pk == first.pk and vm.boot_order.startswith("hd"):
        raise Conflict({"disk": [f"disk {disk.index} is the boot disk of {vm.name} (it boots from its first "
                                 "disk); change the boot order first or delete the VM"]})
    _not_a_base(disk, "removing")
    image_name = f"{vm.name}-disk{disk.index}"
    if keep:
        if disk.backing_file:
            raise Conflict({"keep": [f"disk {disk.index} is a linked clone's overlay, which is no image by itself; "
                                     "delete it instead"]})
        if Image.objects.filter(cluster=vm.cluster, name=image_name).exists():
            raise Conflict({"keep": [f"an image named {image_name} already exists; rename or delete it first"]})
    with transaction.atomic():
        task = create_task(actor, "vm.disk.remove", vm, queue=vm.host.queue,
                           params={"index": disk.index, "keep": keep, "image_name": image_name})
        audit.record(actor, "vm.disk.detach" if keep else "vm.disk.delete", vm, task=str(task.uuid),
                     index=disk.index, **({"image": image_name} if keep else {}))
    return task


@task_kind("vm.disk.remove", label="Remove Disk")
def run_remove_disk(task: Task, progress: Progress) -> str:
    disk = _disk_of(task)
    if disk is None:
        return "already removed"
    vm = disk.vm
    driver = driver_for(vm)
    progress(10, f"Detaching disk {disk.index}")
    driver.unplug_disk(vm, disk.path)
    if task.params["keep"]:
        with transaction.atomic():
            Image.objects.create(cluster=vm.cluster, name=task.params["image_name"], kind=Image.Kind.DISK,
                                 storage_container=disk.storage_container, file_name=disk.file_name,
                                 size_bytes=disk.size_bytes,
                                 disk_format=disk.disk_format or DiskFormat.RAW)
            disk.delete()
        return f"disk {disk.index} detached from {vm.name}; its data is image {task.params['image_name']}"
    driver.delete_disk(disk.path)
    disk.delete()
    return f"disk {disk.index} of {vm.name} deleted"


# NICs


def request_add_nic(actor: Actor, vm: VM, network: Network, ip: str | None = None, mac: str | None = None) -> Task:
    _ready(vm)
    if network.cluster_id != vm.cluster_id:
        raise InvalidRequest({"network": [f"network {network.name} is not in cluster {vm.cluster.name}"]})
    try:
        with transaction.atomic():
            mac = addressing.normalize_mac(mac, "mac") if mac else addressing.new_mac()
            address = addressing.static_ip(network, ip, "ip", set()) if ip else None
            index = (vm.nics.aggregate(top=Max("index"))["top"] + 1) if vm.nics.exists() else 0
            Nic.objects.create(vm=vm, index=index, network=network, mac=mac, ip=address)
            task = create_task(actor, "vm.nic.add", vm, queue=vm.host.queue, params={"mac": mac})
            audit.record(actor, "vm.nic.add", vm, task=str(task.uuid), network=network.name, mac=mac, ip=address)
    except IntegrityError as exc:
        raise Conflict({"mac": [f"another request took this MAC or address at the same time ({exc}); try again"]}) \
            from None
    return task


def _nic_of(task: Task) -> Nic | None:
    return Nic.objects.select_related("network", "vm__host").filter(vm__uuid=task.entity_uuid,
                                                                     mac=task.params["mac"]).first()


def undo_add_nic(task: Task) -> None:
    nic = _nic_of(task)
    if nic is not None:
        driver_for(nic.vm).unplug_nic(nic.vm, nic.mac)
        nic.delete()  # its static address goes back to the pool


@task_kind("vm.nic.add", undo=undo_add_nic, label="Add NIC")
def run_add_nic(task: Task, progress: Progress) -> str:
    nic = _nic_of(task)
    if nic is None:
        raise Conflict("the NIC was removed before it was added")
    driver_for(nic.vm).plug_nic(nic.vm, nic)
    return f"NIC {nic.mac} on {nic.network.name} added to {nic.vm.name}"


def request_remove_nic(actor: Actor, vm: VM, nic: Nic) -> Task:
    _ready(vm)
    remaining = vm.nics.exclude(pk=nic.pk).count()
    for removing_nic in registry.hooks("removing_nic"):
        removing_nic(vm, remaining)
    with transaction.atomic():
        task = create_task(actor, "vm.nic.remove", vm, queue=vm.host.queue, params={"mac": nic.mac})
        audit.record(actor, "vm.nic.remove", vm, task=str(task.uuid), mac=nic.mac, network=nic.network.name,
                     ip=nic.ip)
    return task


@task_kind("vm.nic.remove", label="Remove NIC")
def run_remove_nic(task: Task, progress: Progress) -> str:
    nic = _nic_of(task)
    if nic is None:
        return "already removed"
    driver_for(nic.vm).unplug_nic(nic.vm, nic.mac)
    nic.delete()  # its static address goes back to the pool
    return f"NIC {nic.mac} removed from {nic.vm.name}" + (f"; {nic.ip} is free again" if nic.ip else "")


def request_set_nic_network(actor: Actor, vm: VM, nic: Nic, network: Network, ip: str | None = None) -> Task:
    """Move a NIC to another network; it keeps its MAC, its old static address goes back to the old pool."""
    _ready(vm)
    if network.cluster_id != vm.cluster_id:
        raise InvalidRequest({"network": [f"network {network.name} is not in cluster {vm.cluster.name}"]})
    before = {"network": nic.network_id, "ip": nic.ip}
    try:
        with transaction.atomic():
            address = addressing.static_ip(network, ip, "ip", set()) if ip else None
            Nic.objects.filter(pk=nic.pk).update(network=network, ip=address)
            task = create_task(actor, "vm.nic.update", vm, queue=vm.host.queue,
                               params={"mac": nic.mac, "previous": before})
            audit.record(actor, "vm.nic.update", vm, task=str(task.uuid), mac=nic.mac, network=network.name,
                         ip=address, before={"network": nic.network.name, "ip": nic.ip})
    except IntegrityError as exc:
        raise Conflict({"ip": [f"another request took this address at the same time ({exc}); try again"]}) from None
    return task


def undo_set_nic_network(task: Task) -> None:
    previous = task.params["previous"]
    Nic.objects.filter(vm__uuid=task.entity_uuid, mac=task.params["mac"]).update(
        network_id=previous["network"], ip=previous["ip"])


@task_kind("vm.nic.update", undo=undo_set_nic_network, label="Change NIC Network")
def run_set_nic_network(task: Task, progress: Progress) -> str:
    nic = _nic_of(task)
    if nic is None:
        raise Conflict("the NIC was removed meanwhile")
    driver_for(nic.vm).set_nic_network(nic.vm, nic)
    return f"NIC {nic.mac} of {nic.vm.name} is on {nic.network.name}"
