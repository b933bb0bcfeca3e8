"""Celery entry points: thin wrappers that hand over to the services."""

from celery import shared_task

from .services import bulk, cdroms, images, power, vms  # noqa: F401  (registers the task kinds)
from .services.power import reconcile_power_states
from .services.tasks import execute, reap_stale


@shared_task(name="facet.task.run")
def run_task(task_uuid: str, attempt: int) -> None:
    execute(task_uuid, attempt)


@shared_task(name="facet.tasks.reap")
def reap() -> dict:
    return {**reap_stale(), "partial_uploads_removed": images.sweep_partial_uploads()}


@shared_task(name="facet.vms.reconcile")
def reconcile() -> int:
    return reconcile_power_states()
