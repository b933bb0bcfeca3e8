"""The demo cluster that `make run` seeds: three sim hosts, a storage container, a network, two images, two
templates and a fleet of VMs. Bulk inserts, so `--vms 10000` takes seconds."""

import io
import ipaddress
import itertools
import secrets
from pathlib import Path

import pycdlib
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction

from console.core.access import ADMIN
from console.core.drivers import files
from console.core.models import SimDomain

from ..models import VM, CdRom, Cluster, Host, Image, Network, Nic, StorageContainer, VirtualDisk

GiB = 1024**3
ROLES = ["web", "app", "db", "cache", "build", "k8s-node", "mail", "vpn"]
POWER_MIX = ["on", "on", "on", "off", "on", "off", "paused", "on"]


def demo_iso_bytes() -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="FACET_DEMO")
    text = b"A small ISO made by Facet's demo seed, to insert into CD-ROMs.\n"
    iso.add_fp(io.BytesIO(text), len(text), "/README.TXT;1", rr_name="README.txt", joliet_path="/README.txt")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def ensure_admin(password: str | None) -> tuple[User, str | None]:
    """The `admin` user; returns the password only when this call set it."""
    user, created = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
    user.groups.add(Group.objects.get_or_create(name=ADMIN)[0])
    if created or password:
        password = password or secrets.token_urlsafe(12)
        user.set_password(password)
        user.save()
        return user, password
    return user, None


def _infrastructure() -> tuple[Cluster, list[Host], StorageContainer, Network, Image, Image]:
    cluster, _ = Cluster.objects.get_or_create(name="demo", defaults={"virtual_ip": settings.CLUSTER_VIP})
    hosts = [Host.objects.get_or_create(name=f"host-{i}", defaults={
        "cluster": cluster, "address": f"127.0.0.{i + 1}", "cpus": 32, "memory_bytes": 256 * GiB})[0]
        for i in (1, 2, 3)]
    root = Path(settings.DATA_DIR) / "containers" / "default"
    root.mkdir(parents=True, exist_ok=True)
    storage_container, _ = StorageContainer.objects.get_or_create(cluster=cluster, name="default",
                                                          defaults={"path": str(root), "capacity_bytes": 2 * 1024**4})
    network, _ = Network.objects.get_or_create(cluster=cluster, name="vlan10-servers", defaults={
        "vlan": 10, "cidr": "10.10.0.0/16", "gateway": "10.10.0.1", "dns_servers": "10.10.0.2",
        "pool_start": "10.10.1.1", "pool_end": "10.10.200.254"})
    disk = storage_container.resolve("images/demo-linux.raw")
    files.create_sparse(disk, 2 * GiB)
    disk_image, _ = Image.objects.get_or_create(cluster=cluster, name="demo-linux-disk", defaults={
        "kind": "disk", "storage_container": storage_container, "file_name": "images/demo-linux.raw",
        "size_bytes": 2 * GiB})
    iso_path = storage_container.resolve("images/demo-rescue.iso")
    if not iso_path.exists():
        iso_path.write_bytes(demo_iso_bytes())
    iso_image, _ = Image.objects.get_or_create(cluster=cluster, name="demo-rescue-iso", defaults={
        "kind": "iso", "storage_container": storage_container, "file_name": "images/demo-rescue.iso",
        "size_bytes": iso_path.stat().st_size})
    return cluster, hosts, storage_container, network, disk_image, iso_image


def seed(vm_count: int = 60) -> dict:
    """Create what is missing of the demo cluster; running it again adds nothing that exists."""
    with transaction.atomic():
        cluster, hosts, storage_container, network, disk_image, iso_image = _infrastructure()
        templates = [("tpl-debian-12", VM.GuestOS.LINUX, 2, 2 * GiB),
                     ("tpl-windows-2022", VM.GuestOS.WINDOWS, 4, 8 * GiB)]
        specs = [(name, os_, cpus, memory, True, "off", None) for name, os_, cpus, memory in templates]
        existing = VM.objects.filter(cluster=cluster, is_template=False).count()
        for i in range(existing, vm_count):
            role = ROLES[i % len(ROLES)]
            specs.append((f"{role}-{i + 1:05d}", VM.GuestOS.WINDOWS if role == "mail" else VM.GuestOS.LINUX,
                          [1, 2, 4, 8][i % 4], [1, 2, 4, 8][(i // 4) % 4] * GiB, False, POWER_MIX[i % 8],
                          hosts[i % len(hosts)]))
        known = set(VM.objects.filter(cluster=cluster, name__in=[s[0] for s in specs]).values_list("name", flat=True))
        new = [VM(cluster=cluster, name=name, hostname=name, vcpus=cpus, memory_bytes=memory, guest_os=os_,
                  is_template=template, power_state=state, host=host, source_image=disk_image)
               for name, os_, cpus, memory, template, state, host in specs if name not in known]
        VM.objects.bulk_create(new, batch_size=1000)
        new = list(VM.objects.filter(cluster=cluster, name__in=[vm.name for vm in new]))
        _attach_devices(new, storage_container, network, disk_image)
    return {"cluster": cluster.name, "vms_added": len(new), "vms": VM.objects.filter(cluster=cluster).count()}


def _attach_devices(vms: list[VM], storage_container: StorageContainer, network: Network, base: Image) -> None:
    """Disks as linked clones of the demo image (sparse files), a NIC each, an empty CD-ROM, sim domains."""
    taken = set(Nic.objects.values_list("mac", flat=True))
    used_ips = set(Nic.objects.filter(network=network, ip__isnull=False).values_list("ip", flat=True))
    free_ips = (ip for ip in (str(ipaddress.ip_address(n)) for n in network.pool()) if ip not in used_ips)
    macs = (m for m in (f"52:54:01:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}"
                        for n in itertools.count(1)) if m not in taken)
    disks, nics, cdroms, domains = [], [], [], []
    for vm in vms:
        file_name = f"vms/{vm.uuid}/disk0.raw"
        files.create_sparse(storage_container.resolve(file_name), 0)
        disks.append(VirtualDisk(vm=vm, index=0, size_bytes=base.size_bytes, storage_container=storage_container,
                                 file_name=file_name, backing_file=base.file_name))
        # Most demo VMs have a static address from the pool; every fourth uses DHCP.
        ip = next(free_ips, None) if vm.pk % 4 else None
        nics.append(Nic(vm=vm, index=0, network=network, mac=next(macs), ip=ip))
        cdroms.append(CdRom(vm=vm, slot=0))
        domains.append(SimDomain(uuid=vm.uuid, host_name=vm.host.name if vm.host else "", power_state=vm.power_state))
    for model, rows in ((VirtualDisk, disks), (Nic, nics), (CdRom, cdroms), (SimDomain, domains)):
        model.objects.bulk_create(rows, batch_size=1000)
    for disk in disks:
        files.create_sparse(disk.path, disk.size_bytes)
