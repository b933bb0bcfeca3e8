"""Hypervisor drivers. A Host's driver URI picks one: `sim://` (embedded default), or libvirt for
`qemu:///system`, `qemu+ssh://HOST/system`, `qemu+tls://HOST/system` and libvirt's own `test:///default`."""

from urllib.parse import urlsplit

from ..errors import Conflict
from .base import Driver, DriverError, ProgressCallback

__all__ = ["Driver", "DriverError", "ProgressCallback", "driver_for", "get_driver"]

LIBVIRT_SCHEMES = ("qemu", "qemu+ssh", "qemu+tls", "test")


def get_driver(uri: str) -> Driver:
    scheme = urlsplit(uri).scheme
    if scheme == "sim":
        from .sim import SimDriver

        return SimDriver(uri)
    if scheme in LIBVIRT_SCHEMES:
        try:
            from .libvirt import LibvirtDriver
        except ImportError:
            raise DriverError(f"{uri} needs libvirt-python: pip install 'facet[libvirt]' "
                              "(make setup does it)") from None
        return LibvirtDriver(uri)
    raise DriverError(f"no driver for URI {uri!r} (known: sim://, {', '.join(s + '://' for s in LIBVIRT_SCHEMES)})")


def driver_for(vm) -> Driver:
    """The driver of the host the VM is placed on."""
    if vm.host is None:
        raise Conflict({"host": [f"VM {vm.name} is not placed on a host"]})
    return get_driver(vm.host.driver_uri)
