"""Docker's legacy volume plugin protocol: its endpoints, the shape of each request (every request is checked
before anything is done), the options `docker volume create -o` may give, and the answers' form."""

import json
import re
from dataclasses import dataclass

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,62}$")  # Docker's rule, within the console's 63 characters
# ASCII only: Unicode-aware, `\d` takes other scripts' digits and a case-insensitive K takes the Kelvin sign.
SIZE = re.compile(r"^(\d+)\s*([KMGT]?)(?:i?B)?$", re.IGNORECASE | re.ASCII)
WHOLE = re.compile(r"^\d+$", re.ASCII)
UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
DEFAULT_SIZE = 10 * 1024**3
MIN_SIZE = 1024**2
MIN_XFS_SIZE = 300 * 1000**2  # mkfs.xfs refuses smaller filesystems
FSTYPES = ("ext4", "xfs")
OPTIONS = ("size", "sizeMb", "fstype", "container")

# Endpoint -> the keys its request must hold (Docker may add others; they are ignored).
ENDPOINTS: dict[str, tuple[str, ...]] = {
    "/Plugin.Activate": (),
    "/VolumeDriver.Capabilities": (),
    "/VolumeDriver.List": (),
    "/VolumeDriver.Create": ("Name",),
    "/VolumeDriver.Remove": ("Name",),
    "/VolumeDriver.Get": ("Name",),
    "/VolumeDriver.Path": ("Name",),
    "/VolumeDriver.Mount": ("Name", "ID"),
    "/VolumeDriver.Unmount": ("Name", "ID"),
}


class ProtocolError(Exception):
    """A request Docker should not have sent: answered with its message in `Err`, nothing done."""


@dataclass(frozen=True)
class CreateOptions:
    size_bytes: int
    fstype: str
    container: str


def parse_request(endpoint: str, body: bytes) -> dict:
    """The request's JSON object, checked against the endpoint's required keys and their types."""
    if endpoint not in ENDPOINTS:
        raise ProtocolError(f"unknown endpoint {endpoint}")
    try:
        request = json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise ProtocolError("the request is not JSON") from None
    request = {} if request is None else request
    if not isinstance(request, dict):
        raise ProtocolError("the request is not a JSON object")
    for key in ENDPOINTS[endpoint]:
        if not isinstance(request.get(key), str) or not request[key]:
            raise ProtocolError(f"{endpoint} needs {key!r}, a non-empty string")
    if "Name" in ENDPOINTS[endpoint] and not NAME.match(request["Name"]):
        raise ProtocolError(f"bad volume name {request['Name']!r}: use 2 to 63 letters, digits, '_', '.' or '-', "
                            "starting with a letter or digit")
    if endpoint == "/VolumeDriver.Create" and not isinstance(request.get("Opts") or {}, dict):
        raise ProtocolError("Opts must be an object of option names to values")
    return request


def parse_size(text: str) -> int:
    """`10G`, `512M`, `1T`, `1GiB`; a bare number is bytes."""
    match = SIZE.match(str(text).strip())
    if not match:
        raise ProtocolError(f"size {text!r} is not a size; write it like 512M, 10G or 1T")
    return int(match.group(1)) * UNITS[match.group(2).upper()]


def create_options(opts: dict | None, default_container: str) -> CreateOptions:
    """`-o size=10G` (or `sizeMb=10240`, as the platform's own plugin takes it), `-o fstype=ext4|xfs`,
    `-o container=NAME`. Unknown options are refused rather than ignored: a typo must not make a volume."""
    opts = opts or {}
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ProtocolError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    if "size" in opts and "sizeMb" in opts:
        raise ProtocolError("give size or sizeMb, not both")
    if "sizeMb" in opts:
        if not WHOLE.match(str(opts["sizeMb"]).strip()):
            raise ProtocolError(f"sizeMb {opts['sizeMb']!r} is not a whole number of MiB")
        size = int(opts["sizeMb"]) * 1024**2
    else:
        size = parse_size(opts["size"]) if "size" in opts else DEFAULT_SIZE
    if size < MIN_SIZE:
        raise ProtocolError(f"size {size} bytes is too small; a volume holds at least 1M")
    fstype = str(opts.get("fstype", "ext4")).lower()
    if fstype not in FSTYPES:
        raise ProtocolError(f"fstype {opts['fstype']!r} is not supported; use ext4 or xfs")
    if fstype == "xfs" and size < MIN_XFS_SIZE:
        raise ProtocolError("an xfs volume needs a size of at least 300M")
    return CreateOptions(size_bytes=size, fstype=fstype, container=str(opts.get("container", default_container)))


def answer(**fields) -> bytes:
    """A successful answer; Docker reads a non-empty `Err` as failure."""
    return json.dumps({"Err": "", **fields}).encode()


def error(message: str) -> bytes:
    return json.dumps({"Err": message or "unknown error"}).encode()


def volume(name: str, mountpoint: str = "", status: dict | None = None) -> dict:
    described: dict = {"Name": name, "Mountpoint": mountpoint}
    if status:
        described["Status"] = status
    return described
