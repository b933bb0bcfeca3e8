"""A task runs once at a time (issue 14 item 7), and a rerun says who asked for it (item 15): every change
of a task's state is conditional on its status and attempt, with real threads on the real (SQLite) test
database, whose IMMEDIATE transactions serialize the writers as PostgreSQL's row locks would."""

import sqlite3
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.db.models import Q
from django.utils import timezone

from console.core.actors import Actor
from console.core.errors import InvalidRequest
from console.core.models import AuditEvent, Task
from console.core.tasks.control import rerun
from console.core.tasks.ending import fail, finish
from console.core.tasks.reaper import reap_stale
from console.core.tasks.running import Heartbeat
from console.models import VM
from console.services import vms
from tests.conftest import make_user

GiB = 1024**3
pytestmark = pytest.mark.django_db(transaction=True)


def running_create(actor, attempt: int = 1) -> Task:
    task = vms.request_create_vm(actor, vms.VMSpec(name="web-1", vcpus=1, memory_bytes=GiB))
    Task.objects.filter(pk=task.pk).update(status="running", attempts=attempt, heartbeat_at=timezone.now())
    task.refresh_from_db()
    return task


@pytest.mark.skipif(connection.vendor != "sqlite", reason="holds SQLite's own file lock with sqlite3")
def test_a_heartbeat_survives_a_locked_database(cluster, actor, settings):
    """One refused beat ended the heartbeat for good, and the reaper then gave the task to a second worker."""
    settings.FACET_TASK_HEARTBEAT_SECONDS = 0.05
    task = running_create(actor)
    options = connections.settings["default"].setdefault("OPTIONS", {})
    timeout = options.get("timeout")
    options["timeout"] = 0.05  # the heartbeat thread's connection gives up on a lock at once
    heartbeat = Heartbeat(Q(pk=task.pk, status="running", attempts=task.attempts), str(task.pk))
    try:
        heartbeat.start()
        locker = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock for a while
        time.sleep(0.5)
        locker.execute("ROLLBACK")
        locker.close()
        released = timezone.now()
        deadline = time.monotonic() + 5
        while Task.objects.get(pk=task.pk).heartbeat_at < released and time.monotonic() < deadline:
            time.sleep(0.05)
        assert heartbeat.is_alive()
        assert Task.objects.get(pk=task.pk).heartbeat_at >= released  # it beats again
    finally:
        heartbeat.stop()
        options["timeout"] = timeout


def test_a_requeued_tasks_first_run_neither_ends_nor_undoes_it(cluster, actor):
    first_run = running_create(actor)
    # The reaper requeued it and a second worker now runs attempt 2, while the first run goes on.
    Task.objects.filter(pk=first_run.pk).update(attempts=2)
    assert finish(first_run, Task.Status.SUCCEEDED, message="Done") is False
    fail(first_run, "the first run failed late")
    task = Task.objects.get(pk=first_run.pk)
    assert (task.status, task.attempts, task.error) == ("running", 2, "")
    assert VM.objects.filter(name="web-1").exists()  # vm.create's undo did not remove the second run's VM
    second_run = Task.objects.get(pk=first_run.pk)
    assert finish(second_run, Task.Status.SUCCEEDED, message="Done") is True
    assert Task.objects.get(pk=first_run.pk).status == "succeeded"


def test_two_reapers_at_once_requeue_a_stale_task_once(cluster, actor, settings):
    task = running_create(actor)
    stale = timezone.now() - timedelta(seconds=settings.FACET_TASK_STALE_SECONDS + 1)
    Task.objects.filter(pk=task.pk).update(heartbeat_at=stale)
    both_listed = threading.Barrier(2, timeout=10)
    results, errors = [], []

    def reaper():
        listed = threading.Event()

        def hold_after_listing(execute, sql, params, many, context):
            result = execute(sql, params, many, context)
            if sql.lstrip().upper().startswith("SELECT") and '"heartbeat_at" <' in sql and not listed.is_set():
                listed.set()
                both_listed.wait()  # both reapers have read the task as stale before either changes it
            return result

        try:
            with connection.execute_wrapper(hold_after_listing):
                results.append(reap_stale()["requeued"])
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reaper) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert sorted(results) == [0, 1]
    task.refresh_from_db()
    assert (task.status, task.attempts) == ("queued", 2)


def test_a_rerun_is_audited_and_runs_as_its_new_requester(cluster, admin, run_tasks):
    operator = make_user("olga", "Operator")
    task = running_create(Actor(user=admin))
    finish(task, Task.Status.FAILED, error="host went away")
    rerun(Actor(user=operator, source_address="192.0.2.7"), task)
    task.refresh_from_db()
    assert (task.status, task.attempts, task.created_by) == ("queued", 2, operator)
    event = AuditEvent.objects.get(action="task.rerun")
    assert (event.username, event.entity_uuid, event.source_address) == ("olga", task.uuid, "192.0.2.7")
    assert event.detail["first_requested_by"] == admin.username and event.detail["attempt"] == 2
    with pytest.raises(InvalidRequest, match="only a failed task can be rerun; this one is queued"):
        rerun(Actor(user=operator), task)  # a second rerun, as of two clicks at once
    assert AuditEvent.objects.filter(action="task.rerun").count() == 1
