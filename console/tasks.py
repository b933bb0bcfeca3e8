"""Celery entry points: thin wrappers that hand over to the services."""

from celery import shared_task

from console.core.tasks import execute, execute_batch, reap_stale

from .services import images
from .services.power import reconcile_power_states


@shared_task(name="facet.task.run")
def run_task(task_uuid: str, attempt: int) -> None:
    execute(task_uuid, attempt)


@shared_task(name="facet.task.run_batch")
def run_task_batch(items: list[list]) -> None:
    execute_batch([(task_uuid, attempt) for task_uuid, attempt in items])


@shared_task(name="facet.tasks.reap")
def reap() -> dict:
    return {**reap_stale(), "partial_uploads_removed": images.sweep_partial_uploads()}


@shared_task(name="facet.vms.reconcile")
def reconcile() -> int:
    return reconcile_power_states()
