"""Snapshots of a VM's disks: disk-only, each an external layer per disk.

Taking a snapshot freezes the file each disk writes to (it becomes the snapshot's `SnapshotDisk.file_name`)
and gives the disk a new qcow2 overlay on top of it. The files form a tree as the snapshots do: a snapshot's
files are backed by its parent's, and the VM's current disks by the files of its `is_current` snapshot."""

import uuid

from django.db import models
from django.db.models import Q

from .inventory import VM, DiskFormat, VirtualDisk


class Snapshot(models.Model):
    class State(models.TextChoices):
        CREATING = "creating", "Creating"
        READY = "ready", "Ready"
        REVERTING = "reverting", "Reverting"
        DELETING = "deleting", "Deleting"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    vm = models.ForeignKey(VM, on_delete=models.CASCADE, related_name="snapshots")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.CREATING)
    # The VM's current disks are overlays of this snapshot's files (one per VM at most).
    is_current = models.BooleanField(default=False)
    # Whether the guest's filesystems were frozen (or the VM off) when it was taken, and why not when not.
    consistent = models.BooleanField(default=False)
    consistency_note = models.CharField(max_length=255, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0, help_text="Space its files take on disk")
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["vm", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["vm", "name"], name="snapshot_name_per_vm"),
            models.UniqueConstraint(fields=["vm"], condition=Q(is_current=True), name="one_current_snapshot_per_vm"),
        ]

    def __str__(self) -> str:
        return self.name


class SnapshotDisk(models.Model):
    """One disk's frozen file in a snapshot, with its format as it was written (never read from the file)."""

    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="disks")
    disk = models.ForeignKey(VirtualDisk, on_delete=models.CASCADE, related_name="snapshot_layers")
    file_name = models.CharField(max_length=255)
    disk_format = models.CharField(max_length=8, choices=DiskFormat.choices)

    class Meta:
        ordering = ["snapshot", "disk__index"]
        constraints = [models.UniqueConstraint(fields=["snapshot", "disk"], name="snapshot_layer_per_disk")]

    def __str__(self) -> str:
        return f"{self.snapshot.name} disk {self.disk.index}"

    @property
    def path(self):
        return self.disk.storage_container.resolve(self.file_name)
