"""The VMs a host already runs: domains Facet did not define are listed as unmanaged, and adopting one makes
it a Facet VM with the domain's uuid, shape, disks (left where they are, which must be inside a storage
container), NICs and CD-ROMs. What Facet cannot represent is named, and the adopt refused, before anything is
written. The hypervisor is asked in the request (a listing is a look at the host, as a power state is)."""

from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import files, get_driver
from console.core.drivers.libvirt_network import USER_MODE
from console.core.errors import Conflict, InvalidRequest, check_field
from console.core.models import Task
from console.core.tasks import Progress, create_task, task_kind

from ..models import VM, CdRom, Host, Image, Network, Nic, StorageContainer, VirtualDisk
from ..models.inventory import MAX_VCPUS, name_validator
from .vms import hostname_from

IDE_SLOTS = 4


def _network_of(host: Host, nic: dict) -> Network | None:
    """The Facet network a domain's NIC is on: named by the sim, else the one FACET_LIBVIRT_NETWORKS maps to
    what the NIC is plugged into (QEMU's user mode: a network mapped to it, or any unmapped network)."""
    networks = host.cluster.networks.all()
    if "network" in nic:
        return next((n for n in networks if n.name == nic["network"]), None)
    carriers = settings.FACET_LIBVIRT_NETWORKS
    for network in networks:
        carrier = carriers.get(network.name)
        if carrier is None:
            if nic["kind"] == USER_MODE:
                return network
        elif (carrier.kind, carrier.source) == (nic["kind"], nic["source"]) or (
                carrier.kind == nic["kind"] == USER_MODE):
            return network
    return None


def _storage_container_of(host: Host, path: str) -> tuple[StorageContainer, str] | None:
    for storage_container in host.cluster.storage_containers.all():
        root = Path(storage_container.path).resolve()
        target = Path(path).resolve()
        if root in target.parents:
            return storage_container, str(target.relative_to(root))
    return None


def examine(host: Host, domain: dict) -> list[str]:
    """Why the domain cannot be adopted as it is (empty: it can), the driver's reasons and Facet's."""
    problems = list(domain["problems"])
    disks = [d for d in domain["disks"] if d["device"] == "disk"]
    for number, disk in enumerate(disks):
        if not disk["path"]:
            problems.append(f"disks[{number}] has no file")
        elif _storage_container_of(host, disk["path"]) is None:
            problems.append(f"disks[{number}] ({disk['path']}) is outside every storage container of cluster "
                            f"{host.cluster.name}; move it into one, or add a storage container holding it")
    if len([d for d in domain["disks"] if d["device"] == "cdrom"]) > IDE_SLOTS:
        problems.append(f"the domain has more than {IDE_SLOTS} CD-ROMs")
    for number, nic in enumerate(domain["nics"]):
        if _network_of(host, nic) is None:
            problems.append(f"nics[{number}] ({nic['mac']}) is on {nic.get('kind')} {nic.get('source', '')}, which "
                            "no Facet network maps to (FACET_LIBVIRT_NETWORKS)")
        elif Nic.objects.filter(mac=nic["mac"]).exists():
            problems.append(f"nics[{number}] has MAC {nic['mac']}, which a Facet NIC already uses")
    if not 1 <= domain["vcpus"] <= MAX_VCPUS or domain["vcpus"] > host.cpus:
        problems.append(f"{domain['vcpus']} vCPUs is more than host {host.name} has ({host.cpus})")
    return problems


def unmanaged(host: Host) -> list[dict]:
    """The host's domains that no Facet VM is, each with why it cannot be adopted (if so)."""
    known = {str(u) for u in VM.objects.values_list("uuid", flat=True)}
    domains = [d for d in get_driver(host.driver_uri).domains(host) if d["uuid"] not in known]
    return [{**d, "problems": examine(host, d)} for d in sorted(domains, key=lambda d: d["name"])]


def request_adopt(actor: Actor, host: Host, domain_uuid: str, name: str = "") -> Task:
    domain = next((d for d in unmanaged(host) if d["uuid"] == str(domain_uuid)), None)
    if domain is None:
        raise InvalidRequest({"uuid": [f"host {host.name} has no unmanaged domain with uuid {domain_uuid}"]})
    if domain["problems"]:
        raise Conflict({"uuid": domain["problems"]})
    name = name or domain["name"]
    check_field(name_validator, name, "name")
    if VM.objects.filter(cluster=host.cluster, name=name).exists():
        raise Conflict({"name": [f"a VM named {name!r} already exists; give the adopted VM another name"]})
    try:
        with transaction.atomic():
            vm = VM.objects.create(
                uuid=domain["uuid"], cluster=host.cluster, name=name, host=host, hostname=hostname_from(name),
                power_state=VM.PowerState.CREATING, vcpus=domain["vcpus"], memory_bytes=domain["memory_bytes"],
                max_vcpus=domain.get("max_vcpus", domain["vcpus"]),
                max_memory_bytes=domain.get("max_memory_bytes", domain["memory_bytes"]),
                description=f"Adopted from {host.name}")
            disks = [d for d in domain["disks"] if d["device"] == "disk"]
            for index, disk in enumerate(disks):
                storage_container, relative = _storage_container_of(host, disk["path"])
                path = Path(disk["path"])
                size = (files.qcow2_virtual_size(path) if disk["format"] == "qcow2" else None) or path.stat().st_size
                VirtualDisk.objects.create(vm=vm, index=index, size_bytes=size, storage_container=storage_container,
                                           file_name=relative, file_format=disk["format"])
            for slot, cdrom in enumerate(d for d in domain["disks"] if d["device"] == "cdrom"):
                image = next((i for i in Image.objects.filter(kind=Image.Kind.ISO) if cdrom["path"]
                              and str(i.path) == cdrom["path"]), None)
                CdRom.objects.create(vm=vm, slot=slot, iso_path=cdrom["path"], image=image,
                                     purpose=CdRom.Purpose.IMAGE if cdrom["path"] else CdRom.Purpose.NONE)
            for index, nic in enumerate(domain["nics"]):
                Nic.objects.create(vm=vm, index=index, network=_network_of(host, nic), mac=nic["mac"])
            task = create_task(actor, "vm.adopt", vm, queue=host.queue, params={"domain_name": domain["name"]})
            audit.record(actor, "vm.adopt", vm, task=str(task.uuid), host=host.name, domain=domain["name"])
    except IntegrityError as exc:
        raise Conflict(f"another request changed the inventory at the same time ({exc}); try again") from None
    return task


def undo_adopt(task: Task) -> None:
    """The domain stays as it was on the host; only Facet's rows go (its disks are not Facet's to delete)."""
    VM.objects.filter(uuid=task.entity_uuid, power_state=VM.PowerState.CREATING).delete()


@task_kind("vm.adopt", undo=undo_adopt, label="Adopt VM")
def run_adopt(task: Task, progress: Progress) -> str:
    vm = VM.objects.select_related("host").filter(uuid=task.entity_uuid).first()
    if vm is None:
        raise Conflict("the adopted VM was deleted meanwhile")
    state = get_driver(vm.host.driver_uri).state(vm)
    if state == "unknown":
        raise Conflict({"uuid": [f"domain {task.params['domain_name']} is gone from host {vm.host.name}"]})
    VM.objects.filter(pk=vm.pk).update(power_state=state)
    return f"domain {task.params['domain_name']} adopted as VM {vm.name} ({state})"
