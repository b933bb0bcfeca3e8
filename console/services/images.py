"""Images: uploads streamed straight into a storage container, hashed on the way, size-limited."""

import hashlib
import logging
import time
import uuid
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import files, qemu_img
from console.core.errors import Conflict, InvalidRequest, TooLarge, check_field
from console.core.models import Task
from console.core.tasks import Progress, create_task, finish, task_kind
from console.core.units import iec

from ..models import CdRom, Cluster, Image, StorageContainer, VirtualDisk
from ..models.inventory import DiskFormat, name_validator
from .vms import check_free_space, default_cluster

CHUNK = 1024 * 1024
UPLOADS_DIR = "images"
log = logging.getLogger(__name__)


def check_new_image(cluster: Cluster, name: str, kind: str,
                    storage_container: StorageContainer | None) -> StorageContainer:
    check_field(name_validator, name, "name")
    if kind not in Image.Kind.values:
        raise InvalidRequest({"kind": [f"choose one of {', '.join(Image.Kind.values)}"]})
    if Image.objects.filter(cluster=cluster, name=name).exists():
        raise Conflict({"name": [f"an image named {name!r} already exists"]})
    storage_container = storage_container or cluster.storage_containers.first()
    if storage_container is None:
        raise InvalidRequest({"container": ["the cluster has no storage container"]})
    if storage_container.cluster_id != cluster.id:
        raise InvalidRequest({"container": [
            f"storage container {storage_container.name} is not in cluster {cluster.name}"]})
    return storage_container


def check_upload(cluster: Cluster, name: str, kind: str, storage_container: StorageContainer | None,
                 size: int | None) -> StorageContainer:
    """Everything an upload can be refused for before its first byte: the name, kind and storage container, and the
    file's size (given by the Content-Length, or by the page before it sends the file)."""
    storage_container = check_new_image(cluster, name, kind, storage_container)
    limit = settings.FACET_IMAGE_UPLOAD_LIMIT
    if size is None:
        raise InvalidRequest({"file": ["send the image with a Content-Length header"]})
    if size == 0:
        raise InvalidRequest({"file": ["the file is empty (0 bytes): choose the image file itself"]})
    if size > limit:
        raise TooLarge({"file": [f"{iec(size)} is over the upload limit of {iec(limit)}"]})
    check_free_space(storage_container, size, "file")
    return storage_container


def inspect_format(path: Path, kind: str) -> str:
    """The one look at a new image's format, before it is anyone's disk: `qemu-img info`. A backing file, an
    external data file, encryption or a format other than raw and qcow2 is refused (such a file would make
    QEMU read host files into a VM); an ISO must read as raw, which is how a CD-ROM drive reads it."""
    try:
        found = qemu_img.inspect(path)
    except qemu_img.UnsafeImage as exc:
        raise InvalidRequest({"file": [str(exc)]}) from None
    if kind == Image.Kind.ISO and found != DiskFormat.RAW:
        raise InvalidRequest({"file": [f"this ISO image reads as {found}; upload a plain ISO 9660 file"]})
    return found


def receive_upload(actor: Actor, stream: BinaryIO, *, name: str, kind: str, content_length: int | None,
                   storage_container: StorageContainer | None = None) -> Task:
    """Stream an upload into the storage container. The file appears under its final name only once complete
    and checked; a cut-off, oversized or malformed upload leaves no file and no image, only a failed task."""
    cluster = default_cluster()
    storage_container = check_upload(cluster, name, kind, storage_container, content_length)
    file_name = f"{UPLOADS_DIR}/{uuid.uuid4()}.{'iso' if kind == Image.Kind.ISO else 'raw'}"
    target = storage_container.resolve(file_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    task = create_task(actor, "image.upload", None, enqueue=False, params={
        "name": name, "kind": kind, "storage_container": str(storage_container.uuid), "partial": partial.name})
    task.entity_type, task.entity_name, task.status = "image", name, Task.Status.RUNNING
    task.save()
    progress = Progress(task)
    digest, received = hashlib.sha256(), 0
    try:
        with open(partial, "wb") as out:
            while received < content_length:
                chunk = stream.read(min(CHUNK, content_length - received))
                if not chunk:
                    break
                received += len(chunk)
                digest.update(chunk)
                out.write(chunk)
                progress(100 * received / content_length, f"Received {received} of {content_length} bytes")
        if received < content_length:
            raise InvalidRequest({"file": [f"upload cut off after {received} of {content_length} bytes"]})
        if kind == Image.Kind.ISO and not files.is_iso9660(partial):
            raise InvalidRequest({"file": ["this file is not an ISO 9660 image (no CD001 signature)"]})
        disk_format = inspect_format(partial, kind)
        partial.rename(target)
        with transaction.atomic():
            image = Image.objects.create(cluster=cluster, name=name, kind=kind, storage_container=storage_container,
                                         file_name=file_name, size_bytes=received, sha256=digest.hexdigest(),
                                         disk_format=disk_format, created_by=actor.user)
            task.entity_uuid = image.uuid
            finish(task, Task.Status.SUCCEEDED, message=f"sha256 {image.sha256}")
            audit.record(actor, "image.upload", image, sha256=image.sha256, size_bytes=received)
    except BaseException as exc:
        files.remove(target)
        finish(task, Task.Status.FAILED, error=str(exc) or type(exc).__name__)
        raise
    finally:
        partial.unlink(missing_ok=True)
    return task


def delete_image(actor: Actor, image: Image) -> None:
    users = CdRom.objects.filter(image=image).select_related("vm")
    if users.exists():
        names = ", ".join(sorted({c.vm.name for c in users[:5]}))
        raise Conflict({"image": [f"{image.name} is inserted in CD-ROMs of {names}; eject it first"]})
    if VirtualDisk.objects.filter(storage_container=image.storage_container, backing_file=image.file_name).exists():
        raise Conflict({"image": [f"{image.name} is the base of linked-clone disks; delete those VMs first"]})
    with transaction.atomic():
        audit.record(actor, "image.delete", image)
        path = image.path
        image.delete()
    files.remove(path)


def _partial_of(task: Task) -> Path | None:
    storage_container = StorageContainer.objects.filter(uuid=task.params.get("storage_container")).first()
    name = task.params.get("partial", "")
    if storage_container is None or not name.endswith(".part") or "/" in name:
        return None
    return storage_container.resolve(f"{UPLOADS_DIR}/{name}")


def undo_upload(task: Task) -> None:
    partial = _partial_of(task)
    if partial is not None:
        partial.unlink(missing_ok=True)


@task_kind("image.upload", undo=undo_upload, label="Upload image")
def run_upload(task: Task, progress: Progress) -> str:
    """An upload runs in the web process that receives it; a worker gets one only when the reaper finds it
    silent (that process was killed). Nothing can resume it: it fails, saying so, and its `.part` goes."""
    raise Conflict({"file": ["the upload stopped: the web process receiving it was lost (restarted or killed) "
                             "before the file was complete; nothing was kept, upload the file again"]})


def sweep_partial_uploads() -> int:
    """Remove `.part` files of uploads that nobody writes any more (their web process was killed): older than
    the reaper's silence limit and named by no running upload. Returns how many went."""
    cutoff = time.time() - 2 * settings.FACET_TASK_STALE_SECONDS
    running = {(t.params.get("storage_container"), t.params.get("partial"))
               for t in Task.objects.filter(kind="image.upload", status=Task.Status.RUNNING)}
    removed = 0
    for storage_container in StorageContainer.objects.all():
        for partial in Path(storage_container.path, UPLOADS_DIR).glob("*.part"):
            try:
                if partial.stat().st_mtime < cutoff and (str(storage_container.uuid), partial.name) not in running:
                    partial.unlink()
                    removed += 1
                    log.info("removed %s, left by an upload that was cut off", partial)
            except FileNotFoundError:
                continue  # its upload just ended
    return removed
