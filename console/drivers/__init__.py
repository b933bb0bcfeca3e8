"""Hypervisor drivers. A Host's driver URI picks one: `sim://` (embedded default) or, later,
`qemu:///system` / `qemu+ssh://host/system` (libvirt)."""

from urllib.parse import urlsplit

from .base import Driver, DriverError, ProgressCallback

__all__ = ["Driver", "DriverError", "ProgressCallback", "get_driver"]


def get_driver(uri: str) -> Driver:
    scheme = urlsplit(uri).scheme
    if scheme == "sim":
        from .sim import SimDriver

        return SimDriver(uri)
    raise DriverError(f"no driver for URI {uri!r} (known: sim://)")
