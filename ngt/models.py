"""Guest Tools: the cluster's certificate authority, the certificates it issued to VMs, and the Guest Tools
state of each VM."""

from django.db import models
from django.db.models import Q
from django.urls import reverse

from console.models import VM, Cluster

# The version of the tools we ship; an installed version older than this one can be upgraded.
TOOLS_VERSION = "1.0.0"
# DESIGN.md's two capabilities, as the platform we re-create names them.
CAPABILITIES = ("self-service-restore", "vss-snapshot")
CAPABILITY_LABELS = {"self-service-restore": "Self-service restore", "vss-snapshot": "VSS snapshots"}  # for people


def version_key(version: str) -> tuple[int, ...]:
    """`1.10.2` as (1, 10, 2), so versions compare as numbers; anything not a number counts as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


class CertificateAuthority(models.Model):
    """The cluster's root: its certificate in the clear, its private key only encrypted (see authority.py)."""

    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, related_name="guest_tools_ca")
    certificate_pem = models.TextField()
    encrypted_key = models.BinaryField(help_text="PKCS#8 DER under AES-256-GCM with the key-encryption key")
    fingerprint_sha256 = models.CharField(max_length=95)
    not_after = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cluster"]
        verbose_name = "Guest Tools certificate authority"

    def __str__(self) -> str:
        return f"Guest Tools CA of {self.cluster.name}"


class VMCertificate(models.Model):
    """A client certificate issued to a VM. Only the certificate is kept: its private key went into the
    tools ISO and nowhere else."""

    vm = models.ForeignKey(VM, on_delete=models.CASCADE, related_name="guest_tools_certificates")
    serial = models.CharField(max_length=40, unique=True, help_text="Hexadecimal")
    certificate_pem = models.TextField()
    not_before = models.DateTimeField()
    not_after = models.DateTimeField(db_index=True)
    revoked = models.BooleanField(default=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    task_uuid = models.UUIDField(null=True, blank=True, help_text="The mount task that issued it")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["vm"], condition=Q(revoked=False), name="one_valid_certificate_per_vm"),
        ]

    def __str__(self) -> str:
        return f"{self.vm.name} {self.serial}"


class GuestTools(models.Model):
    """What the console intends (enabled, ISO mounted, capabilities) and what the agent reported last
    (the service fills version, link, last seen, guest OS, hostname and IPs)."""

    vm = models.OneToOneField(VM, on_delete=models.CASCADE, related_name="guest_tools")
    enabled = models.BooleanField(default=False)
    iso_mounted = models.BooleanField(default=False)
    capabilities = models.JSONField(default=list, blank=True)
    certificate = models.ForeignKey(VMCertificate, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    installed_version = models.CharField(max_length=32, blank=True)
    link_active = models.BooleanField(default=False)
    last_seen = models.DateTimeField(null=True, blank=True)
    guest_os = models.CharField(max_length=120, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    ip_addresses = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["vm__name"]
        verbose_name_plural = "Guest Tools"
        indexes = [models.Index(fields=["enabled", "iso_mounted"])]

    def __str__(self) -> str:
        return f"Guest Tools of {self.vm.name}"

    def get_absolute_url(self) -> str:
        return reverse("vm-detail", args=[self.vm.uuid])

    @property
    def available_version(self) -> str:
        return TOOLS_VERSION

    @property
    def upgrade_available(self) -> bool:
        return bool(self.installed_version) and version_key(self.installed_version) < version_key(TOOLS_VERSION)

    @property
    def status(self) -> str:
        """One word for lists: the furthest state reached."""
        if not self.enabled:
            return "disabled"
        if self.link_active:
            return "link active"
        return "ISO mounted" if self.iso_mounted else "enabled"


class RestoreDisk(models.Model):
    """A snapshot attached read-only to its own VM for self-service restore: one disk per disk of the snapshot
    (`serials`), each a new overlay over the snapshot's file, detached by the guest or at `expires_at`."""

    vm = models.ForeignKey(VM, on_delete=models.CASCADE, related_name="restore_disks")
    snapshot = models.ForeignKey("console.Snapshot", on_delete=models.PROTECT, related_name="restore_disks")
    serials = models.JSONField(default=list, help_text="The disks' serials, as the guest sees them")
    file_names = models.JSONField(default=list, help_text="Their overlay files, in the snapshot's storage container")
    attached_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["attached_at", "id"]
        constraints = [models.UniqueConstraint(fields=["snapshot"], name="one_restore_disk_per_snapshot")]

    def __str__(self) -> str:
        return f"{self.snapshot.name} on {self.vm.name}"
