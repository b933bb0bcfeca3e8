"""Create, clone and delete VMs. The request functions validate everything first, then write the
intended rows (a VM in state `creating`) with their task; `provision` and `destroy` do the work."""

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Prefetch, Q, Sum, prefetch_related_objects

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import driver_for, files
from console.core.errors import Conflict, InvalidRequest, check_field
from console.core.models import Task
from console.core.registry import NewVM, registry
from console.core.tasks import Progress, create_task, create_tasks, task_kind
from console.core.units import iec

from ..models import VM, CdRom, Cluster, Host, Image, Network, Nic, StorageContainer, VirtualDisk
from ..models.inventory import MAX_VCPUS, DiskFormat, hostname_validator, name_validator
from ..models.snapshots import Snapshot, SnapshotDisk
from . import addressing

MIN_DISK_BYTES = 1024**2
MAX_DISK_BYTES = 64 * 1024**4
MIN_MEMORY_BYTES = 32 * 1024**2


@dataclass
class NicSpec:
    network: Network
    ip: str | None = None  # None: DHCP; "auto": the next free address of the pool; else that address
    mac: str | None = None  # None: a new one


@dataclass
class VMSpec:
    name: str
    vcpus: int
    memory_bytes: int
    cluster: Cluster | None = None
    host: Host | None = None  # None: automatic placement
    image: Image | None = None
    storage_container: StorageContainer | None = None
    disk_sizes: list[int] = field(default_factory=list)
    nics: list[NicSpec] = field(default_factory=list)
    guest_os: str = VM.GuestOS.LINUX
    hostname: str = ""
    description: str = ""
    is_template: bool = False
    power_on: bool = False
    # The apps' parts of the request, by VMOption name (a customization script): checked by their hooks.
    options: dict[str, Any] = field(default_factory=dict)


def default_cluster() -> Cluster:
    cluster = Cluster.objects.order_by("id").first()
    if cluster is None:
        raise InvalidRequest({"cluster": ["no cluster exists yet; create one first"]})
    return cluster


def check_new_name(cluster: Cluster, name: str, field_name: str = "name") -> None:
    check_field(name_validator, name, field_name)
    if VM.objects.filter(cluster=cluster, name=name).exists():
        raise Conflict({field_name: [f"a VM named {name!r} already exists in cluster {cluster.name}"]})


def hostname_from(name: str) -> str:
    """The VM's name when it is a valid hostname, else its best cleaned form (may be empty)."""
    candidate = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-")[:63].strip("-")
    return candidate


def memory_in_use(host: Host) -> int:
    on = host.vms.filter(power_state__in=[VM.PowerState.ON, VM.PowerState.PAUSED, VM.PowerState.CREATING])
    return on.aggregate(total=Sum("memory_bytes"))["total"] or 0


def place(cluster: Cluster, host: Host | None, vcpus: int, memory_bytes: int, field_name: str = "host") -> Host:
    """The host a VM goes to: the one asked for, checked, or the ready host with most free memory (of those,
    the one with fewest VMs: VMs that are off use no memory, yet a host should not collect them all)."""
    if host is not None:
        if host.cluster_id != cluster.id:
            raise InvalidRequest({field_name: [f"host {host.name} is not in cluster {cluster.name}"]})
        if not host.enabled:
            raise Conflict({field_name: [f"host {host.name} is disabled"]})
        if not host.takes_vms:
            raise Conflict({field_name: [f"host {host.name} is {host.state}: it takes no new VMs"]})
        if memory_bytes > host.memory_bytes:
            raise InvalidRequest({"memory_bytes": [
                f"{iec(memory_bytes)} is more than host {host.name} has ({iec(host.memory_bytes)})"]})
        if vcpus > host.cpus:
            raise InvalidRequest({"vcpus": [f"{vcpus} vCPUs is more than host {host.name} has ({host.cpus})"]})
        return host
    enabled = list(cluster.hosts.filter(enabled=True, maintenance=False, unreachable_since__isnull=True)
                   .annotate(vm_count=Count("vms")))
    if not any(h.cpus >= vcpus for h in enabled):
        raise InvalidRequest({"vcpus": [f"no ready host of cluster {cluster.name} has {vcpus} CPUs"]})
    hosts = [h for h in enabled if h.memory_bytes >= memory_bytes and h.cpus >= vcpus]
    if not hosts:
        raise InvalidRequest({"memory_bytes": [
            f"no ready host of cluster {cluster.name} with {vcpus} CPUs has {iec(memory_bytes)} of memory"]})
    return max(hosts, key=lambda h: (h.memory_bytes - memory_in_use(h), -h.vm_count))


def hot_maxima(host: Host, vcpus: int, memory_bytes: int) -> dict[str, int]:
    """What a new VM can grow to while running (console/services/vm_edit.py): vCPUs up to the host's CPUs,
    memory up to twice its own within the host's (the guest maps it at boot; the balloon holds it back)."""
    return {"max_vcpus": max(vcpus, min(host.cpus, MAX_VCPUS)),
            "max_memory_bytes": max(memory_bytes, min(host.memory_bytes, 2 * memory_bytes))}


def _validate_spec(spec: VMSpec) -> None:
    if not 1 <= spec.vcpus <= MAX_VCPUS:
        raise InvalidRequest({"vcpus": [f"a VM has 1 to {MAX_VCPUS} vCPUs"]})
    if spec.memory_bytes < MIN_MEMORY_BYTES:
        raise InvalidRequest({"memory_bytes": [f"a VM needs at least {iec(MIN_MEMORY_BYTES)} of memory"]})
    for i, size in enumerate(spec.disk_sizes):
        if not MIN_DISK_BYTES <= size <= MAX_DISK_BYTES:
            raise InvalidRequest({f"disks[{i}].size_bytes": [
                f"a disk holds {iec(MIN_DISK_BYTES)} to {iec(MAX_DISK_BYTES)}"]})
    if spec.guest_os not in VM.GuestOS.values:
        raise InvalidRequest({"guest_os": [f"choose one of {', '.join(VM.GuestOS.values)}"]})
    if spec.is_template and spec.power_on:
        raise InvalidRequest({"power_on": ["a template is never powered on"]})
    if spec.hostname:
        check_field(hostname_validator, spec.hostname, "hostname")


def _new_nics(vm: VM | None, cluster: Cluster, nics: list[NicSpec]) -> list[Nic]:
    macs: set[str] = set()
    ips: dict[int, set[str]] = {}
    rows = []
    for i, nic in enumerate(nics):
        if nic.network.cluster_id != cluster.id:
            raise InvalidRequest({f"nics[{i}].network": [f"network {nic.network.name} is not in this cluster"]})
        mac = addressing.normalize_mac(nic.mac, f"nics[{i}].mac") if nic.mac else addressing.new_mac(macs)
        if mac in macs and nic.mac:
            raise InvalidRequest({f"nics[{i}].mac": [f"{mac} is given twice"]})
        macs.add(mac)
        ip = None
        if nic.ip:
            ip = addressing.static_ip(nic.network, nic.ip, f"nics[{i}].ip", ips.setdefault(nic.network.id, set()))
        rows.append(Nic(vm=vm, index=i, network=nic.network, mac=mac, ip=ip))
    return rows


def image_disk_size(image: Image) -> int:
    """The size of the disk a disk image holds, which its copy starts with: a qcow2's virtual size (its
    header's big-endian u64 at byte 24), far above its file's size; a raw image's file size."""
    try:
        if image.disk_format == DiskFormat.QCOW2:
            return files.qcow2_virtual_size(image.path) or image.size_bytes
        if not image.path.is_file():
            raise FileNotFoundError(image.path)
        return image.size_bytes
    except FileNotFoundError:
        raise Conflict({"image": [f"the file of image {image.name} ({image.path}) is missing"]}) from None


def check_free_space(storage_container: StorageContainer, more_bytes: int, field_name: str = "size_bytes") -> None:
    """Refuse sizes the storage container's filesystem cannot hold, even though disk files start sparse: a disk the
    guest may fill must fit, or the failure comes later, inside the guest, as an I/O error."""
    try:
        free = shutil.disk_usage(storage_container.path).free
    except FileNotFoundError:
        raise Conflict({"container": [f"the directory of storage container {storage_container.name} "
                                      f"({storage_container.path}) is missing"]}) from None
    if more_bytes > free:
        raise InvalidRequest({field_name: [
            f"{iec(more_bytes)} is more than storage container {storage_container.name} has free ({iec(free)})"]})


def _check_disks_fit(storage_container: StorageContainer, sizes: list[int]) -> None:
    """Every new disk of a VM fits together; the error names the first disk that does not."""
    for index in range(len(sizes)):
        check_free_space(storage_container, sum(sizes[:index + 1]), f"disks[{index}].size_bytes")


def disk_file_name(vm: VM, index: int) -> str:
    return f"vms/{vm.uuid}/disk{index}.raw"


def request_create_vm(actor: Actor, spec: VMSpec) -> Task:
    cluster = spec.cluster or default_cluster()
    _validate_spec(spec)
    check_new_name(cluster, spec.name)
    host = place(cluster, spec.host, spec.vcpus, spec.memory_bytes)
    image = spec.image
    if image is not None and image.cluster_id != cluster.id:
        raise InvalidRequest({"image": [f"image {image.name} is not in cluster {cluster.name}"]})
    storage_container = (spec.storage_container or (image.storage_container if image else None)
                         or cluster.storage_containers.first())
    if storage_container is None:
        raise InvalidRequest({"container": ["the cluster has no storage container"]})
    checked = check_with_hooks(NewVM(cluster=cluster, name=spec.name, hostname=spec.hostname,
                                     guest_os=spec.guest_os, is_template=spec.is_template), spec.options)
    sizes = list(spec.disk_sizes)
    sources: dict[str, str] = {}
    formats: dict[str, str] = {}
    if image is not None and image.kind == Image.Kind.DISK:
        minimum = image_disk_size(image)
        if sizes and sizes[0] < minimum:
            raise InvalidRequest({"disks[0].size_bytes": [
                f"image {image.name} holds a disk of {iec(minimum)}: the first disk needs at least that"]})
        sizes = sizes or [minimum]
        sources["0"], formats["0"] = str(image.path), image.disk_format
    _check_disks_fit(storage_container, sizes)
    try:
        with transaction.atomic():
            vm = VM.objects.create(
                cluster=cluster, name=spec.name, host=host, vcpus=spec.vcpus, memory_bytes=spec.memory_bytes,
                **hot_maxima(host, spec.vcpus, spec.memory_bytes), guest_os=spec.guest_os,
                hostname=spec.hostname or hostname_from(spec.name),
                description=spec.description, is_template=spec.is_template, source_image=image)
            Nic.objects.bulk_create(_new_nics(vm, cluster, spec.nics))
            VirtualDisk.objects.bulk_create(
                VirtualDisk(vm=vm, index=i, size_bytes=size, storage_container=storage_container,
                            file_name=disk_file_name(vm, i))
                for i, size in enumerate(sizes))
            iso = image if image is not None and image.kind == Image.Kind.ISO else None
            CdRom.objects.create(vm=vm, slot=0, image=iso, iso_path=str(iso.path) if iso else "",
                                 purpose=CdRom.Purpose.IMAGE if iso else CdRom.Purpose.NONE)
            tell_created([(vm, checked)])
            task = create_task(actor, "vm.create", vm, queue=host.queue,
                               params={"disk_sources": sources, "disk_formats": formats,
                                       "power_on": spec.power_on})
            audit.record(actor, "vm.create", vm, task=str(task.uuid))
    except IntegrityError as exc:
        raise Conflict(f"another request changed the inventory at the same time ({exc}); try again") from None
    return task


def locked_vm(vm: VM) -> VM:
    """The VM read again under a row lock held until the transaction ends (PostgreSQL; SQLite's IMMEDIATE
    transactions already hold the whole database's write lock): check-then-act on it inside."""
    return VM.objects.select_for_update(of=("self",)).select_related("host", "cluster").get(pk=vm.pk)


@dataclass
class CloneTarget:
    """One clone as decided before anything is written: `request_clone` decides one, a bulk clone many."""

    name: str
    host: Host
    hostname: str
    nics: list[Nic]  # unsaved rows (index, network, mac, ip) without their VM
    checked: dict[str, Any]  # what each app's check hook returned, for `tell_created`


def request_clone(actor: Actor, source: VM, name: str, *, host: Host | None = None, linked: bool = False,
                  power_on: bool = False, parent: Task | None = None, hostname: str = "",
                  options: dict[str, Any] | None = None, snapshot: Snapshot | None = None) -> Task:
    """Clone a VM or template: same shape, new uuid, new MACs, new static IPs from the pools. From a snapshot
    of the VM, its disks are those of the snapshot (a linked clone is then an overlay of the snapshot's files)."""
    check_clone_source(source)
    _clone_sources(source, snapshot)  # checked now; read again under the source's lock when written
    check_new_name(source.cluster, name)
    if hostname:
        check_field(hostname_validator, hostname, "hostname")
    checked = check_with_hooks(NewVM(cluster=source.cluster, name=name, hostname=hostname,
                                     guest_os=source.guest_os, source=source), options or {})
    target_host = place(source.cluster, host or (source.host if source.host and source.host.takes_vms else None),
                        source.vcpus, source.memory_bytes)
    if not linked:  # a linked clone's overlays start empty; a full copy needs the source's sizes
        source_disks = list(source.disks.select_related("storage_container"))
        for storage_container in {disk.storage_container for disk in source_disks}:
            needed = sum(disk.size_bytes for disk in source_disks if disk.storage_container == storage_container)
            check_free_space(storage_container, needed, "linked")
    nic_specs = [NicSpec(network=n.network, ip="auto" if n.ip else None) for n in source.nics.all()]
    target = CloneTarget(name=name, host=target_host, hostname=hostname or hostname_from(name),
                         nics=_new_nics(None, source.cluster, nic_specs), checked=checked)
    return write_clones(actor, source, [target], linked=linked, power_on=power_on, parent=parent,
                        snapshot=snapshot)[0]


def check_clone_source(source: VM) -> None:
    if source.power_state in (VM.PowerState.CREATING, VM.PowerState.DELETING):
        raise Conflict({"vm": [f"VM {source.name} is {source.power_state}; wait for it to finish"]})


def write_clones(actor: Actor, source: VM, targets: list[CloneTarget], *, linked: bool, power_on: bool,
                 parent: Task | None = None, snapshot: Snapshot | None = None) -> list[Task]:
    """Write the clones' rows and a `vm.clone` task each (on its host's queue), a few statements for any number
    of clones. Everything was checked; a name, MAC or address another request took meanwhile is a Conflict and
    nothing is written. The source is locked and checked again first: a delete of it waits, or has marked it
    deleting. From a snapshot of the source, the clones' disks are made from its files."""
    try:
        with transaction.atomic():
            source = locked_vm(source)
            check_clone_source(source)
            files_of = _clone_sources(source, snapshot)
            disks = [d for d in source.disks.select_related("storage_container") if d.pk in files_of]
            cdroms = list(source.cdroms.all())
            params = {"disk_sources": {str(d.index): str(d.storage_container.resolve(files_of[d.pk][0]))
                                       for d in disks},
                      "disk_formats": {str(d.index): files_of[d.pk][1] for d in disks}, "linked": linked,
                      "power_on": power_on, "source": str(source.uuid)}
            clones = VM.objects.bulk_create([
                VM(cluster=source.cluster, name=t.name, host=t.host, vcpus=source.vcpus,
                   memory_bytes=source.memory_bytes, max_vcpus=source.max_vcpus,
                   max_memory_bytes=source.max_memory_bytes, boot_order=source.boot_order, guest_os=source.guest_os,
                   hostname=t.hostname, description=source.description, parent=source,
                   source_image=source.source_image)
                for t in targets], batch_size=500)
            for vm, target in zip(clones, targets, strict=True):
                for nic in target.nics:
                    nic.vm = vm
            Nic.objects.bulk_create([nic for t in targets for nic in t.nics], batch_size=500)
            VirtualDisk.objects.bulk_create([
                VirtualDisk(vm=vm, index=d.index, size_bytes=d.size_bytes, storage_container=d.storage_container,
                            file_name=disk_file_name(vm, d.index),
                            backing_file=files_of[d.pk][0] if linked else "")
                for vm in clones for d in disks], batch_size=500)
            CdRom.objects.bulk_create([
                CdRom(vm=vm, slot=c.slot, image=c.image, iso_path=c.iso_path if c.purpose == "image" else "",
                      purpose=c.purpose if c.purpose == "image" else "")
                for vm in clones for c in cdroms], batch_size=500)
            tell_created([(vm, target.checked) for vm, target in zip(clones, targets, strict=True)])
            tasks = create_tasks(actor, "vm.clone", [(vm, vm.host.queue, params) for vm in clones], parent=parent)
            audit.record_each(actor, "vm.clone", [
                (vm, {"task": str(task.uuid), "source": str(source.uuid), "linked": linked,
                      **({"snapshot": str(snapshot.uuid)} if snapshot else {})})
                for vm, task in zip(clones, tasks, strict=True)])
    except IntegrityError as exc:
        raise Conflict(f"another request changed the inventory at the same time ({exc}); try again") from None
    return tasks


def _clone_sources(source: VM, snapshot: Snapshot | None) -> dict[int, tuple[str, str]]:
    """By disk id, the file (and its format) a clone's disk is made from: the source's current disks, or the
    snapshot's files."""
    if snapshot is None:
        return {d.pk: (d.file_name, d.disk_format) for d in source.disks.all()}
    if snapshot.vm_id != source.pk:
        raise InvalidRequest({"snapshot": [f"snapshot {snapshot.name} is not a snapshot of {source.name}"]})
    if snapshot.state not in (Snapshot.State.READY, Snapshot.State.REVERTING):
        raise Conflict({"snapshot": [f"snapshot {snapshot.name} is {snapshot.state}"]})
    return {layer.disk_id: (layer.file_name, layer.disk_format) for layer in snapshot.disks.all()}


def check_with_hooks(new_vm: NewVM, options: dict[str, Any]) -> dict[str, Any]:
    """Every app's check of its part of a create or clone request, before anything is written; what each
    returns, by app, for `tell_created`."""
    return check_all_with_hooks([new_vm], [options])[0]


def check_all_with_hooks(new_vms: list[NewVM], options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`check_with_hooks` of many new VMs (a bulk clone's), each app's hook called once for all of them."""
    unknown = set().union(*options) - set(registry.vm_options)
    if unknown:
        raise InvalidRequest({name: ["unknown option"] for name in sorted(unknown)})
    checked: list[dict[str, Any]] = [{} for _ in new_vms]
    for app, hooks in registry.vm_hooks.items():
        if hooks.check:
            for each, value in zip(checked, hooks.check(new_vms, [asked.get(app) for asked in options]), strict=True):
                each[app] = value
    return checked


def tell_created(made: list[tuple[VM, dict[str, Any]]]) -> None:
    """The apps' `created` hooks, once for all the VMs a request made."""
    for app, hooks in registry.vm_hooks.items():
        if hooks.created:
            hooks.created([(vm, checked.get(app)) for vm, checked in made])


def tell_powered(changes: list[tuple[VM, str]]) -> None:
    if changes:
        for powered in registry.hooks("powered"):
            powered(changes)


def _vm_of(task: Task) -> VM | None:
    return VM.objects.select_related("host", "cluster").filter(uuid=task.entity_uuid).first()


def vm_of_task(task: Task) -> VM:
    """The VM a task changes, with its host and cluster; a Conflict (the task fails saying so) when the VM was
    deleted meanwhile."""
    vm = _vm_of(task)
    if vm is None:
        raise Conflict("the VM no longer exists")
    return vm


def _provision(work: list[tuple[Task, Progress]]) -> list[str]:
    """Make the disks, define the VMs, insert their media and power them on if asked: one create or clone
    task, or a batch of clones with a query per table for all of them (the hooks too). Safe to rerun."""
    found = {vm.uuid: vm for vm in VM.objects.filter(uuid__in=[task.entity_uuid for task, _ in work])
             .select_related("host", "cluster")
             .prefetch_related(Prefetch("disks", VirtualDisk.objects.select_related("storage_container")),
                               Prefetch("nics", Nic.objects.select_related("network")))}
    if len(found) < len(work):
        raise Conflict("the VM was deleted before it was created")
    vms = [found[task.entity_uuid] for task, _ in work]
    progresses = [progress for _, progress in work]
    _stage(progresses, 0, "Disks")
    for (task, progress), vm in zip(work, vms, strict=True):
        _make_disks(task, vm, progress)
    # The apps' media first (a tools ISO, customization media): they fill CD-ROM rows, adding drives, so that
    # the hypervisor defines the VM with every drive and medium at once (an IDE drive cannot be added later
    # to a running guest).
    _stage(progresses, 82, "Preparing media")
    for defined in registry.hooks("defined"):
        defined(vms)
    _stage(progresses, 88, "Defining the VM")
    prefetch_related_objects(vms, Prefetch("cdroms", CdRom.objects.order_by("slot")))  # as the hooks left them
    for vm in vms:
        driver_for(vm).create(vm)
    _stage(progresses, 92, "Inserting media")
    for vm in vms:
        for cdrom in vm.cdroms.all():
            if cdrom.iso_path:
                driver_for(vm).insert_cdrom(vm, cdrom.slot, Path(cdrom.iso_path))
    powering = [(task, vm) for (task, _), vm in zip(work, vms, strict=True) if task.params.get("power_on")]
    _stage([progress for (task, progress) in work if task.params.get("power_on")], 95, "Powering on")
    states = {vm.pk: driver_for(vm).power(vm, "power-on") if task.params.get("power_on") else driver_for(vm).state(vm)
              for (task, _), vm in zip(work, vms, strict=True)}
    for state in set(states.values()):
        VM.objects.filter(pk__in=[pk for pk, each in states.items() if each == state]).update(power_state=state)
    tell_powered([(vm, states[vm.pk]) for _, vm in powering])
    return [f"{vm.name} created" + (" and powered on" if states[vm.pk] == "on" else "") for vm in vms]


def _stage(progresses: list[Progress], percent: float, name: str) -> None:
    for progress in progresses:
        progress.stage(percent, name)


def _make_disks(task: Task, vm: VM, progress: Progress) -> None:
    driver = driver_for(vm)
    disks = list(vm.disks.all())
    sources = task.params.get("disk_sources", {})
    formats = task.params.get("disk_formats", {})  # a source named with no format is read as raw
    for n, disk in enumerate(disks):
        step = progress.part(80 * n / len(disks), 80 * (n + 1) / len(disks), f"Disks: preparing disk {disk.index}")
        source = sources.get(str(disk.index))
        if source:
            driver.clone_disk(Path(source), disk.path, task.params.get("linked", False), step,
                              formats.get(str(disk.index), DiskFormat.RAW))
            if disk.path.stat().st_size < disk.size_bytes:
                driver.create_disk(disk.path, disk.size_bytes, disk.disk_format)  # grows the copy to the size
        else:
            driver.create_disk(disk.path, disk.size_bytes, disk.disk_format)


def undo_create(task: Task) -> None:
    """A create or clone (this undoes both) that failed for good leaves no half-made VM: its domain, files
    and rows go."""
    vm = _vm_of(task)
    if vm is not None:
        _remove_everywhere(vm)


def forget_created(task: Task) -> None:
    """A create or clone cancelled before it started: its rows go (it made no file nor domain yet)."""
    vm = _vm_of(task)
    if vm is not None:
        for deleting in registry.hooks("deleting"):
            deleting(vm)
        vm.delete()


def _remove_everywhere(vm: VM) -> None:
    driver = driver_for(vm)
    driver.delete(vm)
    for deleting in registry.hooks("deleting"):
        deleting(vm)
    for disk in vm.disks.select_related("storage_container"):
        driver.delete_disk(disk.path)
    for layer in SnapshotDisk.objects.filter(snapshot__vm=vm).select_related("disk__storage_container"):
        driver.delete_disk(layer.path)
    disk_dirs = {disk.path.parent for disk in vm.disks.select_related("storage_container")}
    vm.delete()
    for directory in disk_dirs:
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


@task_kind("vm.create", undo=undo_create, label="Create VM", discard=forget_created, run_batch=_provision)
def run_create(task: Task, progress: Progress) -> str:
    return _provision([(task, progress)])[0]


@task_kind("vm.clone", undo=undo_create, label="Clone VM", discard=forget_created, run_batch=_provision)
def run_clone(task: Task, progress: Progress) -> str:
    return _provision([(task, progress)])[0]


def request_delete(actor: Actor, vm: VM, parent: Task | None = None) -> Task:
    with transaction.atomic():
        # Locked, then checked: a linked clone of this VM (which locks it too) either committed its disks
        # before, and is found below, or waits and then finds the VM deleting.
        vm = locked_vm(vm)
        if vm.power_state in (VM.PowerState.CREATING, VM.PowerState.DELETING):
            raise Conflict({"vm": [f"VM {vm.name} is {vm.power_state}; wait for it to finish"]})
        file_names = [*vm.disks.values_list("file_name", flat=True),
                      *SnapshotDisk.objects.filter(snapshot__vm=vm).values_list("file_name", flat=True)]
        dependents = VirtualDisk.objects.filter(~Q(vm=vm), backing_file__in=file_names)
        if dependents.exists():
            names = ", ".join(sorted({d.vm.name for d in dependents.select_related("vm")[:5]}))
            raise Conflict({"vm": [f"the disks of {vm.name} back linked clones ({names}); delete those first"]})
        previous = vm.power_state
        VM.objects.filter(pk=vm.pk).update(power_state=VM.PowerState.DELETING)
        task = create_task(actor, "vm.delete", vm, queue=vm.host.queue if vm.host else "default", parent=parent,
                           params={"previous_state": previous})
        audit.record(actor, "vm.delete", vm, task=str(task.uuid))
    return task


def undo_delete(task: Task) -> None:
    VM.objects.filter(uuid=task.entity_uuid).update(
        power_state=task.params.get("previous_state", VM.PowerState.UNKNOWN))


@task_kind("vm.delete", undo=undo_delete, label="Delete VM", discard=undo_delete)
def run_delete(task: Task, progress: Progress) -> str:
    vm = _vm_of(task)
    if vm is None:
        return "already deleted"
    driver = driver_for(vm)
    if driver.state(vm) in ("on", "paused"):
        progress(20, "Powering off")
        driver.power(vm, "power-off")
    progress(50, "Removing the VM and its disks")
    _remove_everywhere(vm)
    return f"{task.entity_name} deleted"
