"""Celery entry points of Guest Tools: thin wrappers that hand over to the services."""

from celery import shared_task

from ngt.services import restore
from ngt.services.sweep import sweep_tools_isos


@shared_task(name="facet.ngt.sweep_tools_isos")
def sweep() -> int:
    return len(sweep_tools_isos())


@shared_task(name="facet.ngt.expire_restore_disks")
def expire_restore_disks() -> int:
    return restore.expire()
