from ..core import models as kernel_models  # noqa: F401  (the kernel's models are tables of this app too)
from .insight import ConsoleSession, MetricSample
from .inventory import VM, CdRom, Cluster, Host, Image, Network, Nic, StorageContainer, VirtualDisk
from .snapshots import Snapshot, SnapshotDisk

__all__ = ["VM", "CdRom", "Cluster", "ConsoleSession", "Host", "Image", "MetricSample", "Network", "Nic", "Snapshot",
           "SnapshotDisk", "StorageContainer", "VirtualDisk"]
