"""Volume groups (disks as sparse files, attached to one VM or Docker host at a time) and Docker hosts."""

import hashlib
import secrets
import uuid
from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from console.models import VM, Cluster, StorageContainer
from console.models.inventory import name_validator

SERIAL_LENGTH = 20  # virtio-blk serials stop at 20 bytes; the guest sees /dev/disk/by-id/virtio-SERIAL


def new_serial() -> str:
    return ("fvg" + uuid.uuid4().hex)[:SERIAL_LENGTH]


class DockerHost(models.Model):
    """A machine running dockerd and our volume plugin: a VM of the cluster, or a registered machine that
    sees the storage containers' directories and attaches disk files by loop device."""

    class Kind(models.TextChoices):
        VM = "vm", "VM of the cluster"
        EXTERNAL = "external", "Registered machine"

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for the plugin"
        READY = "ready", "Ready"
        REFUSED = "refused", "Refused"

    KEY_PREFIX = "facetdh_"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="docker_hosts")
    name = models.CharField(max_length=63, validators=[name_validator])
    kind = models.CharField(max_length=8, choices=Kind.choices)
    vm = models.OneToOneField(VM, null=True, blank=True, on_delete=models.SET_NULL, related_name="docker_host")
    address = models.CharField(max_length=255, blank=True, help_text="Where to reach the machine, for people")
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    problem = models.TextField(blank=True, help_text="Why the host was refused")
    key_hash = models.CharField(max_length=64, unique=True)
    key_hint = models.CharField(max_length=16)
    probe_nonce = models.CharField(max_length=64,
                                   help_text="Written into each storage container; the plugin reads it back")
    storage_containers_seen = models.ManyToManyField(StorageContainer, blank=True, related_name="docker_hosts")
    docker_version = models.CharField(max_length=64, blank=True)
    plugin_version = models.CharField(max_length=64, blank=True)
    last_contact_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="docker_host_name_per_cluster")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("docker-host-detail", args=[self.uuid])

    @staticmethod
    def hash(key: str) -> str:
        # Keys are 256-bit random, so a plain SHA-256 is enough and finds the host in one lookup (as ApiToken).
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def generate_key(cls) -> str:
        return cls.KEY_PREFIX + secrets.token_urlsafe(32)

    def probe_file(self, storage_container: StorageContainer) -> Path:
        return storage_container.resolve(f".facet-probes/{self.uuid}")


class VolumeGroupQuerySet(models.QuerySet):
    def with_details(self) -> "VolumeGroupQuerySet":
        """What lists and pages show of each group: its storage container, disks and attachment, in fixed queries."""
        return self.select_related("storage_container", "attachment__vm", "attachment__docker_host").prefetch_related(
            "disks", "shared_with")

    def reachable_by(self, host: DockerHost) -> "VolumeGroupQuerySet":
        """The Docker-backed groups a Docker host's key reaches: those it created, holds (attached to it) or an
        Admin shared with it; never another host's."""
        mine = Q(created_by_host=host) | Q(attachment__docker_host=host) | Q(shared_with=host)
        return self.filter(cluster=host.cluster).exclude(docker_volume="").filter(
            pk__in=VolumeGroup.objects.filter(mine).values("pk"))


class VolumeGroup(models.Model):
    class State(models.TextChoices):
        CREATING = "creating", "Creating"
        READY = "ready", "Ready"
        DELETING = "deleting", "Deleting"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="volume_groups")
    name = models.CharField(max_length=63, validators=[name_validator])
    description = models.CharField(max_length=255, blank=True)
    storage_container = models.ForeignKey(StorageContainer, on_delete=models.PROTECT, related_name="volume_groups")
    state = models.CharField(max_length=8, choices=State.choices, default=State.CREATING)
    docker_volume = models.CharField(max_length=63, blank=True, help_text="The Docker volume it backs, if any")
    fstype = models.CharField(max_length=8, blank=True, help_text="Filesystem the plugin makes (ext4, xfs)")
    created_by_host = models.ForeignKey(DockerHost, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    shared_with = models.ManyToManyField(DockerHost, blank=True, related_name="shared_volume_groups",
                                         help_text="Docker hosts an Admin let use it besides the one that made it")
    used_bytes = models.PositiveBigIntegerField(null=True, blank=True, help_text="As the plugin last reported")
    mounts = models.JSONField(default=list, blank=True, help_text="Caller ids of the containers using it")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VolumeGroupQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "name"], name="volume_group_name_per_cluster"),
            models.UniqueConstraint(fields=["cluster", "docker_volume"], condition=~Q(docker_volume=""),
                                    name="docker_volume_once_per_cluster"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("volume-group-detail", args=[self.uuid])

    @property
    def size_bytes(self) -> int:
        return sum(disk.size_bytes for disk in self.disks.all())


class VolumeGroupDisk(models.Model):
    group = models.ForeignKey(VolumeGroup, on_delete=models.CASCADE, related_name="disks")
    index = models.PositiveSmallIntegerField()
    size_bytes = models.PositiveBigIntegerField()
    file_name = models.CharField(max_length=255)
    serial = models.CharField(max_length=SERIAL_LENGTH, unique=True, default=new_serial)

    class Meta:
        ordering = ["group", "index"]
        constraints = [models.UniqueConstraint(fields=["group", "index"], name="disk_index_per_volume_group")]

    def __str__(self) -> str:
        return f"{self.group.name} disk {self.index}"

    @property
    def path(self) -> Path:
        return self.group.storage_container.resolve(self.file_name)


class VolumeGroupAttachment(models.Model):
    """Where a group is attached: one row per group at most, which is what keeps one writer at a time."""

    class State(models.TextChoices):
        ATTACHING = "attaching", "Attaching"
        ATTACHED = "attached", "Attached"
        DETACHING = "detaching", "Detaching"

    group = models.OneToOneField(VolumeGroup, on_delete=models.CASCADE, related_name="attachment")
    # Deleting a VM frees its groups (its domain, and so the attachment, are gone); a Docker host is removed
    # only once nothing is attached to it.
    vm = models.ForeignKey(VM, null=True, blank=True, on_delete=models.CASCADE, related_name="volume_groups")
    docker_host = models.ForeignKey(DockerHost, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="volume_groups")
    state = models.CharField(max_length=9, choices=State.choices, default=State.ATTACHING)
    attached_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(vm__isnull=True) ^ Q(docker_host__isnull=True),
                                              name="attached_to_a_vm_or_a_docker_host")]

    def __str__(self) -> str:
        return f"{self.group.name} on {self.target_name}"

    @property
    def target_name(self) -> str:
        return self.docker_host.name if self.docker_host_id else self.vm.name
