import uuid

from django.db import models


class Task(models.Model):
    """One change to the cluster, as the administrator sees it: queued, running with progress, ended."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ENDED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=40)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    percent = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    entity_type = models.CharField(max_length=40, blank=True)
    entity_uuid = models.UUIDField(null=True, blank=True)
    entity_name = models.CharField(max_length=80, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    params = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=80, default="default")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Deliveries so far; a stale message is dropped")
    celery_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["entity_uuid", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.entity_name} ({self.status})"

    @property
    def ended(self) -> bool:
        return self.status in self.ENDED
