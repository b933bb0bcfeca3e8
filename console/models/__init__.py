from .access import ApiToken, AuditEvent
from .inventory import VM, CdRom, Cluster, Host, Image, Network, Nic, StorageContainer, VirtualDisk
from .sim import SimDomain
from .tasks import Task

__all__ = [
    "VM", "ApiToken", "AuditEvent", "CdRom", "Cluster", "Host", "Image", "Network", "Nic",
    "SimDomain", "StorageContainer", "Task", "VirtualDisk",
]
