"""Celery entry points: thin wrappers that hand over to the services."""

import logging

from celery import shared_task
from celery.signals import task_received

from console.core.tasks.reaper import fail_here, reap_stale
from console.core.tasks.running import execute, execute_batch, received

from .models import Host
from .services import hosts, images, metrics

log = logging.getLogger(__name__)


@shared_task(name="facet.task.run")
def run_task(task_uuid: str, attempt: int) -> None:
    execute(task_uuid, attempt)


@task_received.connect
def note_received(request=None, **_) -> None:
    """The worker's consumer took a task message: its Facet tasks beat from now on
    (console.core.tasks.running.received)."""
    try:
        if request.name == "facet.task.run":
            received([(request.args[0], request.args[1])])
        elif request.name == "facet.task.run_batch":
            received([(task_uuid, attempt) for task_uuid, attempt in request.args[0]])
    except Exception:  # never stop the consumer: without the mark, the hour-long redelivery still comes
        log.exception("could not note the receipt of %s", getattr(request, "id", "a message"))


@shared_task(name="facet.task.fail")
def fail_task(task_uuid: str, attempt: int, error: str) -> None:
    """The reaper's failure of a task whose worker was lost, with its undo, on the task's own queue."""
    fail_here(task_uuid, attempt, error)


@shared_task(name="facet.task.run_batch")
def run_task_batch(items: list[list]) -> None:
    execute_batch([(task_uuid, attempt) for task_uuid, attempt in items])


@shared_task(name="facet.tasks.reap")
def reap() -> dict:
    return {**reap_stale(), "partial_uploads_removed": images.sweep_partial_uploads()}


@shared_task(name="facet.vms.reconcile")
def reconcile() -> int:
    return hosts.reconcile_everywhere()


@shared_task(name="facet.vms.reconcile_host")
def reconcile_host(host_name: str) -> int:
    return hosts.reconcile_host(host_name)


@shared_task(name="facet.hosts.check")
def check_hosts() -> dict:
    return hosts.check_hosts()


@shared_task(name="facet.metrics.sample")
def sample_metrics() -> int:
    """Ask each host's worker for a sample of its VMs: the hypervisor is read where it runs. A sample not
    taken within an interval is dropped (a host whose worker is down shows a gap, not a burst later)."""
    hosts = list(Host.objects.filter(enabled=True))
    for host in hosts:
        sample_host_metrics.apply_async(args=[host.pk], queue=host.queue, expires=metrics.interval())
    return len(hosts)


@shared_task(name="facet.metrics.sample_host")
def sample_host_metrics(host_id: int) -> int:
    host = Host.objects.filter(pk=host_id).first()
    return metrics.sample_host(host) if host is not None else 0


@shared_task(name="facet.metrics.roll_up")
def roll_up_metrics() -> int:
    return metrics.roll_up()
