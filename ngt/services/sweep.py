"""The periodic sweep of tools ISOs that no CD-ROM references (celery beat, `facet.ngt.sweep_tools_isos`).

A remount commits the new ISO's CD-ROM row, then deletes the previous ISO; a worker killed in between leaves that
previous ISO, which holds a private key (revoked by then), on disk with nothing to remove it. So do an unmount
or a VM delete killed after their commit. The sweep removes such files, and `.part` files a killed write left.

An ISO stays while a CD-ROM row names it, or a mount still queued or running may give it back to its CD-ROM
(its `previous_iso`, restored if the mount fails), or it is younger than FACET_TOOLS_ISO_SWEEP_GRACE_SECONDS
(a mount writes its file before the transaction that a rerun repeats)."""

import logging
import time

from django.conf import settings

from console.core.models import Task
from console.models import CdRom, StorageContainer
from ngt.services import tools_iso
from ngt.services.guest_tools import ACTIVE, ISO_DIRECTORY

log = logging.getLogger(__name__)


def _kept() -> set[str]:
    referenced = set(CdRom.objects.exclude(iso_path="").values_list("iso_path", flat=True))
    for params in Task.objects.filter(kind="ngt.mount", status__in=ACTIVE).values_list("params", flat=True):
        referenced.update(path for path in (params.get("iso_path"), params.get("previous_iso")) if path)
    return referenced


def sweep_tools_isos(grace_seconds: float | None = None) -> list[str]:
    """Delete the tools ISOs (and `.part` files) of every storage container that nothing references and that are
    older than the grace period; answers the paths deleted."""
    grace = settings.FACET_TOOLS_ISO_SWEEP_GRACE_SECONDS if grace_seconds is None else grace_seconds
    kept = _kept()
    oldest = time.time() - grace
    removed = []
    for storage_container in StorageContainer.objects.all():
        directory = storage_container.resolve(ISO_DIRECTORY)
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            iso = path.with_name(path.name.removesuffix(".part"))
            if iso.suffix != ".iso" or str(iso) in kept or not path.is_file() or path.is_symlink():
                continue
            if path.stat().st_mtime > oldest:
                continue
            tools_iso.remove_iso(iso)
            removed.append(str(path))
    if removed:
        log.warning("removed %d tools ISO(s) no CD-ROM referenced: %s", len(removed), ", ".join(removed))
    return removed
