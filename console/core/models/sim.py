from django.db import models


class SimDomain(models.Model):
    """The `sim` hypervisor's own view of a VM, kept apart from the inventory so that the reconcile
    reads state back from the "hypervisor" exactly as it does from libvirt."""

    uuid = models.UUIDField(unique=True)
    host_name = models.CharField(max_length=63)
    power_state = models.CharField(max_length=10, default="off")
    cdroms = models.JSONField(default=dict, help_text="slot -> ISO path")
    disks = models.JSONField(default=dict, help_text="serial -> disk path")
    # What libvirt's domain XML would hold: name, vcpus, memory_bytes (and their max_), boot_order, nics
    # (MAC -> network name) and disks (path -> format, of a domain that Facet did not define).
    definition = models.JSONField(default=dict)

    def __str__(self) -> str:
        return str(self.uuid)
