from django.db import models


class SimDomain(models.Model):
    """The `sim` hypervisor's own view of a VM, kept apart from the inventory so that the reconcile
    reads state back from the "hypervisor" exactly as it does from libvirt."""

    uuid = models.UUIDField(unique=True)
    host_name = models.CharField(max_length=63)
    power_state = models.CharField(max_length=10, default="off")
    cdroms = models.JSONField(default=dict, help_text="slot -> ISO path")
    disks = models.JSONField(default=dict, help_text="serial -> disk path")

    def __str__(self) -> str:
        return str(self.uuid)
