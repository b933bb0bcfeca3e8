"""What a kind of task is: the function that does its work (it gets a `Progress` to report through), the one
that undoes its written intent after a failure, the one that drops a cancelled request's intent, and the
label pages show. Declared once, on the run function (`@task_kind("vm.clone")` on `run_clone`)."""

import time
from collections.abc import Callable

from django.utils import timezone

from ..models import Task
from ..registry import TaskKind, registry


class Progress:
    """Writes percent and message at most once a second (and always the last word)."""

    def __init__(self, task: Task) -> None:
        self.task = task
        # The claim just wrote the row: a task done within a second (a bulk clone's child) writes no progress.
        self._last_write = time.monotonic()
        self.stages: dict[str, float] = {}  # seconds spent in each named stage, for the log
        self._stage: tuple[str, float] | None = None

    def __call__(self, percent: float, message: str | None = None) -> None:
        self.task.percent = max(0, min(99, int(percent)))
        if message is not None:
            self.task.message = message[:255]
        now = time.monotonic()
        if now - self._last_write >= 1.0:
            self._last_write = now
            Task.objects.filter(pk=self.task.pk).update(
                percent=self.task.percent, message=self.task.message, heartbeat_at=timezone.now())

    def stage(self, percent: float, name: str) -> None:
        """Begin a named stage of the work: its name is the task's message, its time goes to the log."""
        self.end_stage()
        self._stage = (name, time.monotonic())
        self(percent, name)

    def end_stage(self) -> None:
        if self._stage is not None:
            name, began = self._stage
            self.stages[name] = self.stages.get(name, 0.0) + time.monotonic() - began
            self._stage = None

    def part(self, start: float, end: float, message: str | None = None) -> Callable[[float], None]:
        """A callback mapping a step's own fraction [0, 1] into [start, end] percent."""
        return lambda fraction: self(start + (end - start) * fraction, message)


RunFunction = Callable[[Task, Progress], str | None]
UndoFunction = Callable[[Task], None]
BatchFunction = Callable[[list[tuple[Task, Progress]]], list[str]]


def task_kind(name: str, undo: UndoFunction | None = None, label: str | Callable[[Task], str] = "",
              discard: UndoFunction | None = None, run_batch: BatchFunction | None = None):
    """Declare the decorated function as the work of tasks of this kind (a second declaration of a kind is
    an error at start-up); `label` is how pages name such a task ("Clone VM" for "vm.clone"); `discard`
    makes its queued tasks cancellable, and `run_batch` runs a batch of them at once (see `TaskKind`)."""

    def register(run: RunFunction) -> RunFunction:
        registry.task_kinds.add(name, TaskKind(run=run, undo=undo, discard=discard, run_batch=run_batch))
        if label:
            registry.task_labels.add(name, label)
        return run

    return register


def task_label(task: Task) -> str:
    """How pages name a task: its kind's label, or the kind itself for a kind that has none."""
    label = registry.task_labels.get(task.kind) or task.kind
    return label(task) if callable(label) else label
