"""The cluster inventory: what exists and what the administrator intends it to be."""

import ipaddress
import uuid
from pathlib import Path

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse

MAX_VCPUS = 256

name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
    "Use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit.",
)
hostname_validator = RegexValidator(
    r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$",
    "A hostname is 1-63 letters, digits or '-', not starting or ending with '-'.",
)


class Cluster(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    virtual_ip = models.GenericIPAddressField(protocol="IPv4", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Host(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="hosts")
    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    address = models.GenericIPAddressField(null=True, blank=True)
    driver_uri = models.CharField(max_length=255, default="sim://")
    cpus = models.PositiveIntegerField(default=16, validators=[MinValueValidator(1)])
    memory_bytes = models.PositiveBigIntegerField(default=64 * 1024**3)
    enabled = models.BooleanField(default=True)
    # In maintenance a host gets no new VM, and its VMs are moved away (console/services/hosts.py).
    maintenance = models.BooleanField(default=False)
    # Written every few seconds by the host's Celery worker and by its Guest Tools Service instance.
    worker_seen_at = models.DateTimeField(null=True, blank=True)
    guest_tools_seen_at = models.DateTimeField(null=True, blank=True)
    # Set by the host check when the worker stopped answering; cleared when it answers again.
    unreachable_since = models.DateTimeField(null=True, blank=True)

    class State(models.TextChoices):
        READY = "ready", "Ready"
        MAINTENANCE = "maintenance", "Maintenance"
        UNREACHABLE = "unreachable", "Unreachable"

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def queue(self) -> str:
        """The Celery queue whose worker runs on this host."""
        return f"host.{self.name}"

    @property
    def state(self) -> str:
        if self.unreachable_since is not None:
            return self.State.UNREACHABLE
        return self.State.MAINTENANCE if self.maintenance else self.State.READY

    @property
    def takes_vms(self) -> bool:
        """Whether new VMs (created, cloned, moved, restarted) may be placed here."""
        return self.enabled and self.state == self.State.READY


class StorageContainer(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="storage_containers")
    name = models.CharField(max_length=63, validators=[name_validator])
    path = models.CharField(max_length=1024, help_text="Absolute directory holding the disk files.")
    capacity_bytes = models.PositiveBigIntegerField(default=1024**4)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="storage_container_name_per_cluster")]

    def __str__(self) -> str:
        return self.name

    def resolve(self, relative: str) -> Path:
        """Absolute path of a file in this storage container, refusing anything that leaves it."""
        root = Path(self.path).resolve()
        target = (root / relative).resolve()
        if target != root and root not in target.parents:
            raise ValueError(f"{relative!r} leaves storage container {self.name}")
        return target


class DiskFormat(models.TextChoices):
    RAW = "raw", "raw"
    QCOW2 = "qcow2", "qcow2"


class Image(models.Model):
    class Kind(models.TextChoices):
        DISK = "disk", "Disk image"
        ISO = "iso", "ISO image"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="images")
    name = models.CharField(max_length=63, validators=[name_validator])
    kind = models.CharField(max_length=8, choices=Kind.choices)
    storage_container = models.ForeignKey(StorageContainer, on_delete=models.PROTECT, related_name="images")
    file_name = models.CharField(max_length=255)
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    # Found by `qemu-img info` once, when the file arrived, and named to QEMU on every read after that.
    disk_format = models.CharField(max_length=8, choices=DiskFormat.choices, default=DiskFormat.RAW)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="image_name_per_cluster")]

    def __str__(self) -> str:
        return self.name

    @property
    def path(self) -> Path:
        return self.storage_container.resolve(self.file_name)


class Network(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="networks")
    name = models.CharField(max_length=63, validators=[name_validator])
    vlan = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(4094)])
    cidr = models.CharField(max_length=43, help_text="Subnet such as 10.0.0.0/24")
    gateway = models.GenericIPAddressField(null=True, blank=True)
    dns_servers = models.CharField(max_length=255, blank=True, help_text="Comma-separated addresses")
    pool_start = models.GenericIPAddressField(null=True, blank=True)
    pool_end = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="network_name_per_cluster")]

    def __str__(self) -> str:
        return self.name

    @property
    def subnet(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr, strict=False)

    def pool(self) -> range:
        """Integer addresses of the static-IP pool (empty when the network has none)."""
        if not (self.pool_start and self.pool_end):
            return range(0)
        return range(int(ipaddress.ip_address(self.pool_start)), int(ipaddress.ip_address(self.pool_end)) + 1)


class VM(models.Model):
    class PowerState(models.TextChoices):
        CREATING = "creating", "Creating"
        ON = "on", "On"
        OFF = "off", "Off"
        PAUSED = "paused", "Paused"
        DELETING = "deleting", "Deleting"
        UNKNOWN = "unknown", "Unknown"

    class GuestOS(models.TextChoices):
        LINUX = "linux", "Linux"
        WINDOWS = "windows", "Windows"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="vms")
    name = models.CharField(max_length=80, validators=[name_validator])
    hostname = models.CharField(max_length=63, blank=True, validators=[hostname_validator])
    description = models.CharField(max_length=255, blank=True)
    host = models.ForeignKey(Host, null=True, blank=True, on_delete=models.PROTECT, related_name="vms")
    power_state = models.CharField(max_length=10, choices=PowerState.choices, default=PowerState.CREATING)
    vcpus = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(MAX_VCPUS)])
    memory_bytes = models.PositiveBigIntegerField()
    guest_os = models.CharField(max_length=10, choices=GuestOS.choices, default=GuestOS.LINUX)
    is_template = models.BooleanField(default=False)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="clones")
    source_image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL)
    # Restarted on another host when its host fails (console/services/hosts.py), where its disks are reachable.
    high_availability = models.BooleanField(default=False)
    # Why the VM is down or its state unknown, when Facet knows (its host failed); empty otherwise.
    down_reason = models.CharField(max_length=255, blank=True)
    # The most vCPUs and memory the running guest can be given without a power cycle (hot-plug, balloon);
    # set at creation, raised by an edit that then waits for the next power cycle.
    max_vcpus = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(MAX_VCPUS)])
    max_memory_bytes = models.PositiveBigIntegerField(default=0)
    # What an edit could not apply to the running guest: {"vcpus": N, "memory_bytes": M}, in the definition
    # and applied when the VM next powers off.
    pending = models.JSONField(default=dict, blank=True)
    boot_order = models.CharField(max_length=32, default="hd", help_text="Comma-separated: hd, cdrom, network")
    # Raised by every edit: the API's ETag, so that two editors do not overwrite each other.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="vm_name_per_cluster")]
        indexes = [models.Index(fields=["power_state"]), models.Index(fields=["is_template", "name"]),
                   models.Index(fields=["name"])]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("vm-detail", args=[self.uuid])


class VirtualDisk(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    vm = models.ForeignKey(VM, on_delete=models.CASCADE, related_name="disks")
    index = models.PositiveSmallIntegerField()
    size_bytes = models.PositiveBigIntegerField()
    storage_container = models.ForeignKey(StorageContainer, on_delete=models.PROTECT, related_name="disks")
    file_name = models.CharField(max_length=255)
    backing_file = models.CharField(max_length=255, blank=True, help_text="Base file of a linked clone")
    # Set where the file's format is not what the row implies (an adopted domain's standalone qcow2 disk).
    file_format = models.CharField(max_length=8, choices=DiskFormat.choices, blank=True)

    class Meta:
        ordering = ["vm", "index"]
        constraints = [models.UniqueConstraint(fields=["vm", "index"], name="disk_index_per_vm")]

    def __str__(self) -> str:
        return f"{self.vm.name} disk {self.index}"

    @property
    def path(self) -> Path:
        return self.storage_container.resolve(self.file_name)

    @property
    def disk_format(self) -> str:
        """A linked clone's disk is a qcow2 overlay of its base, and so is a disk's overlay on a snapshot (a
        `.qcow2` file); every other disk is a raw copy or a new raw file. Known from the row, because the guest
        writes the file's first bytes."""
        return self.file_format or (DiskFormat.QCOW2 if self.backing_file or self.file_name.endswith(".qcow2")
                                    else DiskFormat.RAW)


class Nic(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    vm = models.ForeignKey(VM, on_delete=models.CASCADE, related_name="nics")
    index = models.PositiveSmallIntegerField()
    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="nics")
    mac = models.CharField(max_length=17, unique=True)
    ip = models.GenericIPAddressField(null=True, blank=True, help_text="Static address from the pool")

    class Meta:
        ordering = ["vm", "index"]
        constraints = [
            models.UniqueConstraint(fields=["vm", "index"], name="nic_index_per_vm"),
            models.UniqueConstraint(fields=["network", "ip"], condition=Q(ip__isnull=False),
                                    name="static_ip_once_per_network"),
        ]

    def __str__(self) -> str:
        return self.mac


class CdRom(models.Model):
    class Purpose(models.TextChoices):
        NONE = "", "Empty"
        IMAGE = "image", "Image"
        GUEST_TOOLS = "guest-tools", "Guest Tools"
        CUSTOMIZATION = "customization", "Customization"

    vm = models.ForeignKey(VM, on_delete=models.CASCADE, related_name="cdroms")
    slot = models.PositiveSmallIntegerField()
    iso_path = models.CharField(max_length=1024, blank=True)
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, blank=True, default="")

    class Meta:
        ordering = ["vm", "slot"]
        constraints = [models.UniqueConstraint(fields=["vm", "slot"], name="cdrom_slot_per_vm")]

    def __str__(self) -> str:
        return f"{self.vm.name} cd-rom {self.slot}"
