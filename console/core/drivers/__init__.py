"""Hypervisor drivers. A Host's driver URI picks one: `sim://` (embedded default), or libvirt for
`qemu:///system`, `qemu+ssh://HOST/system`, `qemu+tls://HOST/system` and libvirt's own `test:///default`."""

from urllib.parse import parse_qsl, urlsplit

from ..errors import Conflict
from .base import Driver, DriverError, ProgressCallback

__all__ = ["Driver", "DriverError", "ProgressCallback", "driver_for", "get_driver", "shown_uri"]

LIBVIRT_SCHEMES = ("qemu", "qemu+ssh", "qemu+tls", "test")


def shown_uri(uri: str) -> str:
    """A driver URI as anyone may read it: scheme, host and path. The user and the query go (`keyfile=`,
    `pkipath=`, `known_hosts=` name files of the console's own keys), so do a password and a fragment."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else "(not a URI)"


def without_uri_secrets(text: str, uri: str) -> str:
    """A hypervisor's message with the URI as `shown_uri` gives it and the values of its query (key file
    paths, which ssh repeats in its own warnings) and its user left out."""
    text = text.replace(uri, shown_uri(uri))
    parts = urlsplit(uri)
    for value in sorted((v for _, v in parse_qsl(parts.query) if v), key=len, reverse=True):
        text = text.replace(value, "(hidden)")
    return text.replace(f"{parts.username}@", "") if parts.username else text


def get_driver(uri: str) -> Driver:
    scheme = urlsplit(uri).scheme
    if scheme == "sim":
        from .sim import SimDriver

        return SimDriver(uri)
    if scheme in LIBVIRT_SCHEMES:
        try:
            from .libvirt import LibvirtDriver
        except ImportError:
            raise DriverError(f"{shown_uri(uri)} needs libvirt-python: pip install 'facet[libvirt]' "
                              "(make setup does it)") from None
        return LibvirtDriver(uri)
    known = ", ".join(s + "://" for s in ("sim", *LIBVIRT_SCHEMES))
    raise DriverError(f"no driver for URI {shown_uri(uri)!r} (known: {known})")


def driver_for(vm) -> Driver:
    """The driver of the host the VM is placed on."""
    if vm.host is None:
        raise Conflict({"host": [f"VM {vm.name} is not placed on a host"]})
    return get_driver(vm.host.driver_uri)
