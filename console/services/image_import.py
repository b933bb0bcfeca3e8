"""Images from a URL: a task downloads the file into the storage container, hashed and size-limited on the
way, checks the optional sha256, inspects a disk with `qemu-img info` (images.inspect_format's rules, plus
vmdk and vhdx) and converts it to a standalone qcow2 (raw stays raw); an ISO is kept as it is.

The URL must be http(s) and its host must resolve only to public addresses, unless an Admin allowed a
network (FACET_IMAGE_IMPORT_ALLOWED_NETWORKS): the worker would otherwise fetch the console's own
services or a cloud's metadata for whoever asks. The address checked is the address connected to (no
second lookup a DNS server could answer differently), and redirects are not followed."""

import hashlib
import http.client
import ipaddress
import re
import socket
import ssl
import uuid
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import transaction

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import DriverError, files, qemu_img
from console.core.errors import Conflict, InvalidRequest, TooLarge
from console.core.models import Task
from console.core.tasks import Progress, create_task, task_kind
from console.core.units import iec

from ..models import Image, StorageContainer
from ..models.inventory import DiskFormat
from .images import UPLOADS_DIR, check_new_image
from .vms import default_cluster

CHUNK = 1024 * 1024
TIMEOUT_SECONDS = 30
IMPORTED_FORMATS = ("raw", "qcow2", "vmdk", "vhdx")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def name_from_url(url: str) -> str:
    """A default image name: the URL's last path segment, cleaned to the name rules."""
    stem = PurePosixPath(unquote(urlsplit(url).path)).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:63]
    return cleaned or "imported-image"


def resolve_checked(url: str) -> tuple[str, int, str]:
    """(host, port, address to connect to) of an http(s) URL whose host resolves only to allowed addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest({"url": ["give an http:// or https:// URL with a host"]})
    if parts.username or parts.password:
        raise InvalidRequest({"url": ["credentials in the URL are not taken; use a URL that needs none"]})
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (ValueError, OSError) as exc:
        raise InvalidRequest({"url": [f"cannot resolve {parts.hostname}: {exc}"]}) from None
    addresses = sorted({info[4][0] for info in found})
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        allowed = any(ip in network for network in settings.FACET_IMAGE_IMPORT_ALLOWED_NETWORKS)
        if not ip.is_global and not allowed:
            kind = ("loopback" if ip.is_loopback else "link-local" if ip.is_link_local
                    else "private" if ip.is_private else "non-public")
            raise InvalidRequest({"url": [
                f"{parts.hostname} resolves to {ip}, a {kind} address; an Admin can allow its network with "
                "FACET_IMAGE_IMPORT_ALLOWED_NETWORKS"]})
    return parts.hostname, port, addresses[0]


def request_import(actor: Actor, url: str, *, name: str = "", kind: str = "", sha256: str = "",
                   storage_container: StorageContainer | None = None) -> Task:
    cluster = default_cluster()
    resolve_checked(url)
    sha256 = (sha256 or "").strip().lower()
    if sha256 and not SHA256.match(sha256):
        raise InvalidRequest({"sha256": ["give the file's SHA-256 as 64 hex digits"]})
    name = name or name_from_url(url)
    kind = kind or (Image.Kind.ISO if urlsplit(url).path.lower().endswith(".iso") else Image.Kind.DISK)
    storage_container = check_new_image(cluster, name, kind, storage_container)
    with transaction.atomic():
        task = create_task(actor, "image.import", None, params={
            "url": url, "name": name, "kind": kind, "sha256": sha256, "storage_container": str(storage_container.uuid),
            "file": f"{uuid.uuid4()}"})
        task.entity_type, task.entity_name = "image", name
        task.save(update_fields=["entity_type", "entity_name"])
        audit.record(actor, "image.import", None, entity_type="image", name=name, url=url,
                     task=str(task.uuid))
    return task


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to the address that was checked, with the certificate checked against the URL's host."""

    def __init__(self, host: str, port: int, address: str) -> None:
        super().__init__(host, port, timeout=TIMEOUT_SECONDS, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _open(url: str) -> http.client.HTTPResponse:
    host, port, address = resolve_checked(url)
    parts = urlsplit(url)
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = _PinnedHTTPS(host, port, address)
    else:
        connection = http.client.HTTPConnection(address, port, timeout=TIMEOUT_SECONDS)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("GET", target, headers={"Host": parts.netloc.rsplit("@", 1)[-1],
                                                   "User-Agent": "Facet image import"})
        response = connection.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        raise Conflict({"url": [f"cannot download {url}: {exc}"]}) from None
    if 300 <= response.status < 400:
        raise Conflict({"url": [f"the server redirects to {response.getheader('Location')}; import that URL"]})
    if response.status != 200:
        raise Conflict({"url": [f"the server answered {response.status} {response.reason}"]})
    return response


def _paths(task: Task) -> tuple[StorageContainer, Path, Path]:
    storage_container = StorageContainer.objects.get(uuid=task.params["storage_container"])
    stem = task.params["file"]
    if not re.fullmatch(r"[0-9a-f-]{36}", stem):
        raise Conflict("the task's file name is not one it made")
    partial = storage_container.resolve(f"{UPLOADS_DIR}/{stem}.part")
    return storage_container, partial, storage_container.resolve(f"{UPLOADS_DIR}/{stem}.conv")


def _download(task: Task, partial: Path, progress: Progress) -> tuple[int, str]:
    limit = settings.FACET_IMAGE_UPLOAD_LIMIT
    response = _open(task.params["url"])
    length = response.getheader("Content-Length")
    total = int(length) if length and length.isdigit() else None
    if total is not None and total > limit:
        raise TooLarge({"url": [f"the file holds {iec(total)}, over the image limit of {iec(limit)}"]})
    digest, received = hashlib.sha256(), 0
    partial.parent.mkdir(parents=True, exist_ok=True)
    with response, open(partial, "wb") as out:
        while chunk := response.read(CHUNK):
            received += len(chunk)
            if received > limit:
                raise TooLarge({"url": [f"the download passed the image limit of {iec(limit)}"]})
            digest.update(chunk)
            out.write(chunk)
            progress(70 * received / total if total else 35, f"Downloaded {iec(received)}"
                     + (f" of {iec(total)}" if total else ""))
    if total is not None and received < total:
        raise Conflict({"url": [f"the download stopped after {received} of {total} bytes"]})
    return received, digest.hexdigest()


def undo_import(task: Task) -> None:
    """Nothing of a failed import stays: neither the download nor a half-converted file."""
    try:
        _, partial, converted = _paths(task)
    except (StorageContainer.DoesNotExist, Conflict):
        return
    files.remove(partial)
    files.remove(converted)


@task_kind("image.import", undo=undo_import, label="Import Image")
def run_import(task: Task, progress: Progress) -> str:
    storage_container, partial, converted = _paths(task)
    kind, name = task.params["kind"], task.params["name"]
    if Image.objects.filter(cluster=storage_container.cluster, name=name).exists():
        raise Conflict({"name": [f"an image named {name!r} already exists"]})
    size, sha256 = _download(task, partial, progress)
    if task.params["sha256"] and sha256 != task.params["sha256"]:
        raise InvalidRequest({"sha256": [f"the file's SHA-256 is {sha256}, not {task.params['sha256']}; "
                                         "nothing was kept"]})
    progress(75, "Inspecting the file")
    try:
        if kind == Image.Kind.ISO:
            if not files.is_iso9660(partial) or qemu_img.inspect(partial) != DiskFormat.RAW:
                raise InvalidRequest({"url": ["this file is not an ISO 9660 image (no CD001 signature)"]})
            final, disk_format = partial, DiskFormat.RAW
        else:
            found = qemu_img.inspect(partial, IMPORTED_FORMATS)
            if found == DiskFormat.RAW:
                final, disk_format = partial, DiskFormat.RAW
            else:
                progress(80, f"Converting the {found} image to qcow2")
                qemu_img.convert_standalone(partial, found, converted, DiskFormat.QCOW2)
                disk_format = qemu_img.inspect(converted)  # what came out is checked as an upload would be
                final = converted
    except qemu_img.UnsafeImage as exc:
        raise InvalidRequest({"url": [str(exc)]}) from None
    except DriverError as exc:
        raise Conflict({"url": [str(exc)]}) from None
    file_name = f"{UPLOADS_DIR}/{task.params['file']}.{'iso' if kind == Image.Kind.ISO else disk_format}"
    target = storage_container.resolve(file_name)
    final.rename(target)
    files.remove(partial)
    try:
        with transaction.atomic():
            image = Image.objects.create(cluster=storage_container.cluster, name=name, kind=kind,
                                         storage_container=storage_container,
                                         file_name=file_name, size_bytes=target.stat().st_size, sha256=sha256,
                                         disk_format=disk_format, created_by=task.created_by)
            Task.objects.filter(pk=task.pk).update(entity_uuid=image.uuid)
    except Exception:
        files.remove(target)
        raise
    return f"image {name} imported ({iec(size)} downloaded, sha256 {sha256[:12]}…, {disk_format})"
