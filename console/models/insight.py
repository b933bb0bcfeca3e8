"""What the console shows of running VMs: browser console sessions (ticket, audit) and usage metrics."""

import uuid
from datetime import UTC, datetime

from django.conf import settings
from django.db import models

from .inventory import VM, Host


class ConsoleSession(models.Model):
    """One browser console of a VM: the ticket it was opened with (single use: `opened_at` is set once) and
    the audit of the session (who, from where, when, for how long, why it ended)."""

    class Kind(models.TextChoices):
        VNC = "vnc", "Screen (VNC)"
        SERIAL = "serial", "Serial console"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    vm = models.ForeignKey(VM, null=True, on_delete=models.SET_NULL, related_name="console_sessions")
    vm_name = models.CharField(max_length=80)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    source_address = models.GenericIPAddressField(null=True, blank=True)
    issued_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=120, blank=True)

    class Meta:
        ordering = ["-issued_at", "-id"]

    def __str__(self) -> str:
        return f"{self.username} {self.kind} {self.vm_name}"

    @property
    def seconds(self) -> float | None:
        if self.opened_at is None or self.closed_at is None:
            return None
        return (self.closed_at - self.opened_at).total_seconds()


class MetricSample(models.Model):
    """A VM's or a host's usage over one interval: raw samples (every FACET_METRICS_INTERVAL seconds, kept a
    day) and 5-minute averages (kept 30 days). `subject` is the VM's uuid, or the host's for the host's row
    (the sum of its running VMs). Rates are per second; a missing sample is a gap, never a zero."""

    RAW, ROLLUP = 20, 300  # resolution in seconds

    resolution = models.PositiveIntegerField()
    # Milliseconds since the epoch: a chart groups by integer arithmetic in SQL, with no dates to parse.
    at_ms = models.BigIntegerField()
    subject = models.UUIDField()
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+")
    vm = models.ForeignKey(VM, null=True, on_delete=models.CASCADE, related_name="+", db_index=False)
    cpu_percent = models.FloatField(null=True, help_text="of the VM's vCPUs (of the host's CPUs for a host)")
    memory_used = models.BigIntegerField(null=True)
    memory_total = models.BigIntegerField(null=True)
    disk_read = models.FloatField(null=True)
    disk_write = models.FloatField(null=True)
    net_rx = models.FloatField(null=True)
    net_tx = models.FloatField(null=True)
    # Raw VM samples only: the cumulative counters the next sample's rates start from.
    counters = models.JSONField(null=True)

    class Meta:
        ordering = ["at_ms"]
        indexes = [models.Index(fields=["subject", "resolution", "at_ms"], name="metric_subject_time"),
                   models.Index(fields=["host", "resolution", "at_ms"], name="metric_host_time"),
                   models.Index(fields=["resolution", "at_ms"], name="metric_time")]

    def __str__(self) -> str:
        return f"{self.subject} {self.time:%Y-%m-%d %H:%M:%S}"

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.at_ms / 1000, tz=UTC)

    @property
    def disk_total(self) -> float:
        """Bytes per second read and written (what the top-VMs table shows)."""
        return (self.disk_read or 0) + (self.disk_write or 0)

    @property
    def net_total(self) -> float:
        """Bytes per second received and sent."""
        return (self.net_rx or 0) + (self.net_tx or 0)
