"""An upload whose web process was killed (issue 14, item 8): the reaper's requeue reaches a worker that
fails the task saying why and removes its `.part`; a `.part` nobody writes any more is swept by beat's reap.

The killed web process is played by the state it leaves (a running `image.upload` task whose heartbeat
stopped, and its `.part` file): a SIGKILL between two chunks leaves exactly this."""

import contextlib
import io
import os
import time
from datetime import timedelta

from django.utils import timezone

from console import tasks as celery_tasks
from console.core.models import Task
from console.core.tasks.reaper import reap_stale
from console.core.tasks.running import execute
from console.models import Image
from console.services import images


class KilledMidway(io.RawIOBase):
    """A client stream that gives half the bytes, then stands for the web process dying."""

    def __init__(self, size: int) -> None:
        self.sent, self.size = 0, size

    def read(self, n: int = -1) -> bytes:
        if self.sent >= self.size // 2:
            raise SystemExit("killed")
        self.sent += min(n, 4096)
        return b"\0" * min(n, 4096)


def killed_upload(cluster, actor) -> tuple[Task, os.PathLike]:
    """The state a SIGKILL of the web process mid-upload leaves: a running upload task gone silent and its
    `.part` file (re-made here, as `receive_upload`'s cleanup runs on any exception Python sees)."""
    uploads = cluster.storage_containers.get().resolve("images")
    before = set(uploads.glob("*.part"))
    with contextlib.suppress(SystemExit):
        images.receive_upload(actor, KilledMidway(1 << 20), name="big", kind="disk", content_length=1 << 20)
    task = Task.objects.get(kind="image.upload")
    partial = uploads / task.params.get("partial", "lost.raw.part")
    assert not before and not partial.exists()
    partial.write_bytes(b"\0" * 8192)  # what the cleanup would not have had the chance to remove
    Task.objects.filter(pk=task.pk).update(status=Task.Status.RUNNING, finished_at=None, error="",
                                           heartbeat_at=timezone.now() - timedelta(hours=1))
    return task, partial


def test_a_killed_upload_is_failed_with_a_reason_and_its_part_file_removed(cluster, actor, monkeypatch):
    monkeypatch.setattr("console.core.tasks.sending.send", lambda task: None)  # the worker is called below
    task, partial = killed_upload(cluster, actor)
    assert reap_stale()["requeued"] == 1
    task.refresh_from_db()
    execute(str(task.uuid), task.attempts)  # what the worker the reaper handed it to does
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert "the web process receiving it was lost" in task.error and "upload the file again" in task.error
    assert not partial.exists()
    assert not Image.objects.filter(name="big").exists()


def test_beat_sweeps_part_files_nobody_writes(cluster, actor, settings, monkeypatch):
    monkeypatch.setattr("console.core.tasks.sending.send", lambda task: None)
    settings.FACET_TASK_STALE_SECONDS = 60
    uploads = cluster.storage_containers.get().resolve("images")
    stale, fresh = uploads / "old.raw.part", uploads / "new.raw.part"
    for path in (stale, fresh):
        path.write_bytes(b"\0" * 4096)
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    result = celery_tasks.reap()
    assert result["partial_uploads_removed"] == 1
    assert not stale.exists() and fresh.exists()  # an upload still writing keeps its file
