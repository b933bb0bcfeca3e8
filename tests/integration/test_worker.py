"""Tasks through a real redis-server and real Celery worker and beat processes."""

import subprocess
import sys

import pytest
import requests
from celery import current_app

from console.core import access
from console.core.actors import Actor
from console.core.models import SimDomain, Task
from console.models import VM, Host, Image
from console.services import vms
from tests.realparts import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
GiB = 1024**3


def wait_until_ended(task: Task, timeout: float = 60) -> Task:
    def ended():
        task.refresh_from_db()
        return task.ended

    wait_for(ended, timeout, f"task {task.kind} to end")
    return task


def slow_host(cluster) -> Host:
    """A host whose every hypervisor call takes 2 s, so a test can kill the worker mid-task."""
    return Host.objects.create(cluster=cluster, name="slow", driver_uri="sim://?delay=2", cpus=8,
                               memory_bytes=16 * GiB)


def source_vm(actor, celery_processes) -> VM:
    task = vms.request_create_vm(actor, vms.VMSpec(name="source", vcpus=1, memory_bytes=GiB,
                                                   image=Image.objects.get(name="base-disk"),
                                                   host=Host.objects.get(name="host-1")))
    assert wait_until_ended(task).status == "succeeded", task.error
    return VM.objects.get(name="source")


def clone_and_kill_the_worker(cluster, actor, celery_processes, name: str) -> Task:
    """Start a clone on the slow host and kill the worker (its whole process group) while it runs."""
    slow = slow_host(cluster)  # before the worker starts, which listens to the queue of each host
    worker = celery_processes.worker()
    source = source_vm(actor, celery_processes)
    task = vms.request_clone(actor, source, name, host=slow)
    wait_for(lambda: Task.objects.filter(pk=task.pk, status="running").exists(), 30, "the clone to start")
    celery_processes.kill(worker)
    return task


def test_clone_end_to_end(cluster, actor, celery_processes):
    celery_processes.worker()
    source = source_vm(actor, celery_processes)
    task = vms.request_clone(actor, source, "clone-1", power_on=True)
    assert wait_until_ended(task).status == "succeeded", task.error
    assert task.percent == 100 and task.heartbeat_at is not None
    clone = VM.objects.get(name="clone-1")
    assert clone.power_state == "on" and clone.parent == source
    assert clone.disks.get().path.read_bytes()[:10] == b"bootsector"


def test_a_task_asked_for_through_the_web_process_reaches_the_worker_at_once(cluster, admin, celery_processes):
    """A web process hands its tasks to the broker itself: no beat runs here, whose reaper would send a task the
    web left queued (it did, up to FACET_REAP_INTERVAL_SECONDS later, after logging that it could not)."""
    celery_processes.worker()
    url = celery_processes.web()
    key = access.create_token(Actor(user=admin), admin, "web")[1]

    answer = requests.post(f"{url}/api/v1/vms/", json={"name": "from-the-web", "vcpus": 1, "memory_bytes": GiB},
                           headers={"Authorization": f"Token {key}"}, timeout=60)

    assert answer.status_code == 202, answer.text
    task = Task.objects.get(uuid=answer.json()["uuid"])
    assert wait_until_ended(task, timeout=30).status == "succeeded", task.error
    assert VM.objects.get(name="from-the-web").power_state == "off"


def test_a_worker_following_hosts_runs_the_tasks_of_a_host_added_after_it_started(cluster, actor,
                                                                                 celery_processes):
    celery_processes.worker(follow_hosts=True, FACET_FOLLOW_HOSTS_SECONDS="0.5")
    later = Host.objects.create(cluster=cluster, name="added-later", cpus=8, memory_bytes=16 * GiB)
    task = vms.request_create_vm(actor, vms.VMSpec(name="on-the-new-host", vcpus=1, memory_bytes=GiB,
                                                   image=Image.objects.get(name="base-disk"), host=later))
    assert wait_until_ended(task).status == "succeeded", task.error
    assert "now serving queue host.added-later" in celery_processes.logs()


def test_a_killed_worker_task_is_requeued_and_finished_once(cluster, actor, celery_processes):
    task = clone_and_kill_the_worker(cluster, actor, celery_processes, "survivor")

    celery_processes.worker()
    celery_processes.beat()
    assert wait_until_ended(task, timeout=90).status == "succeeded", task.error
    assert task.attempts == 2
    clone = VM.objects.get(name="survivor")
    assert SimDomain.objects.filter(uuid=clone.uuid).count() == 1
    disk_dir = clone.disks.get().path.parent
    assert sorted(p.name for p in disk_dir.iterdir()) == ["disk0.raw"]  # no leftover .part file


def test_a_killed_worker_task_fails_cleanly_after_the_last_attempt(cluster, actor, celery_processes):
    task = clone_and_kill_the_worker(cluster, actor, celery_processes, "doomed")

    celery_processes.worker(FACET_TASK_MAX_ATTEMPTS="1")
    celery_processes.beat()
    assert wait_until_ended(task, timeout=60).status == "failed"
    assert "worker lost" in task.error
    assert not VM.objects.filter(name="doomed").exists()  # no half-made VM


TAKE_AND_HOLD = """
import sys, time
from kombu import Connection
with Connection(sys.argv[1]) as connection:
    message = connection.default_channel.basic_get(sys.argv[2], no_ack=False)
    print("taken" if message else "empty", flush=True)
    time.sleep(600)
"""


def test_a_message_taken_by_a_worker_killed_before_it_said_so_comes_back_from_redis(cluster, actor,
                                                                                    celery_processes, tmp_path):
    """A consumer killed between taking a task's message and Celery's `task_received` (here one that takes
    the message and is SIGKILLed holding it): no heartbeat was stamped, so the reaper cannot tell the task from
    one still waiting its turn, and Redis gives the message back after FACET_BROKER_REDELIVER_SECONDS."""
    task = vms.request_create_vm(actor, vms.VMSpec(name="late", vcpus=1, memory_bytes=GiB,
                                                   host=Host.objects.get(name="host-1")))
    output = tmp_path / "taker.out"
    broker = current_app.conf.broker_url
    taker = subprocess.Popen([sys.executable, "-c", TAKE_AND_HOLD, broker, task.queue], stdout=output.open("w"),
                             start_new_session=True)
    wait_for(lambda: output.read_text().strip() in ("taken", "empty"), 30, "the message to be taken")
    assert output.read_text().strip() == "taken"
    celery_processes.kill(taker)

    celery_processes.worker(FACET_BROKER_REDELIVER_SECONDS="2")  # no beat: no reaper
    assert wait_until_ended(task, 60).status == "succeeded", task.error
    assert task.attempts == 1 and VM.objects.get(name="late").power_state == "off"
