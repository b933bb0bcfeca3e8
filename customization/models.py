"""Customization scripts in the library, and each VM's first-boot customization."""

import hashlib
import secrets
import uuid

from django.db import models
from django.urls import reverse

from console.models import VM


class Kind(models.TextChoices):
    CLOUD_INIT = "cloud-init", "cloud-init"
    SYSPREP = "sysprep", "Sysprep"


class CustomizationScript(models.Model):
    """A saved script. Its content may hold passwords: Viewers see only its name and metadata."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=80, unique=True)
    description = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.CLOUD_INIT)
    format = models.CharField(max_length=60, blank=True, help_text="The format detected when it was saved")
    content = models.TextField()
    owner = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    usage_count = models.PositiveIntegerField(default=0, help_text="VMs created or cloned with it")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("customization-script", args=[self.uuid])


class Datasource(models.TextChoices):
    CONFIG_DRIVE = "config-drive", "ConfigDrive (config-2)"
    NOCLOUD = "nocloud", "NoCloud (cidata)"
    SYSPREP = "sysprep", "Sysprep (unattend.xml)"


class VMCustomization(models.Model):
    """What a VM's first boot is given (a copy, so a later edit of the source cannot change it) and
    how far it got."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        MEDIA_ATTACHED = "media-attached", "Media attached"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "Unknown"

    ACTIVE = (Status.MEDIA_ATTACHED, Status.RUNNING)

    vm = models.OneToOneField(VM, on_delete=models.CASCADE, related_name="customization")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    datasource = models.CharField(max_length=12, choices=Datasource.choices)
    format = models.CharField(max_length=60, blank=True)
    content = models.TextField()
    source = models.CharField(max_length=300, help_text="Where the content came from: pasted, a file, a path")
    script = models.ForeignKey(CustomizationScript, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="uses")
    key_values = models.JSONField(default=dict, blank=True)
    sealed_values = models.TextField(blank=True, help_text="Encrypted values for the media only, erased once they "
                                                           "are built (services/sealed.py)")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    message = models.TextField(blank=True, help_text="The guest's own words when it reported")
    media_files = models.JSONField(default=list, blank=True, help_text="[{path, size}] of the ISO")
    iso_path = models.CharField(max_length=1024, blank=True)
    cdrom_slot = models.PositiveSmallIntegerField(null=True, blank=True)
    report_token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    reported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["vm"]

    def __str__(self) -> str:
        return f"customization of {self.vm}"

    @property
    def ended(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.UNKNOWN)

    MASK = "********"

    def key_values_for(self, may_read_secrets: bool) -> dict[str, str]:
        """The key-values as someone may see them: Operators and Admins read the values (they could give them
        anyway); below, a key shows but its value, often an administrator's password, is masked."""
        return dict(self.key_values) if may_read_secrets else dict.fromkeys(self.key_values, self.MASK)

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def new_report_token(self) -> str:
        """A one-time secret for the guest's phone_home URL; only its hash is kept."""
        token = secrets.token_urlsafe(32)
        self.report_token_hash = self.hash_token(token)
        return token

