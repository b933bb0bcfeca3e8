import logging
import os
import threading

from celery import Celery, bootsteps
from click import Option

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("facet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
log = logging.getLogger(__name__)

# How often a worker started with --follow-hosts looks for hosts added since it started.
FOLLOW_HOSTS_SECONDS = float(os.environ.get("FACET_FOLLOW_HOSTS_SECONDS", "5"))
app.user_options["worker"].add(Option(
    ("--follow-hosts",), is_flag=True, default=False,
    help="Also serve the queue of every host added later (the one-machine installation of `manage.py serve`)."))


class FollowHosts(bootsteps.StartStopStep):
    """Adds the queue of each new host to this worker, so a host added in the console of a one-machine
    installation gets its tasks run without restarting the worker. The queue is added through the worker's
    own remote control (a broadcast to itself), which runs it on the consumer's thread."""

    def __init__(self, worker, follow_hosts: bool = False, **options) -> None:
        super().__init__(worker, **options)
        self.enabled = follow_hosts
        self.stopped = threading.Event()

    def start(self, worker) -> None:
        threading.Thread(target=self.follow, args=(worker.hostname, set(app.amqp.queues.consume_from)),
                         name="follow-hosts", daemon=True).start()

    def stop(self, worker) -> None:
        self.stopped.set()

    def follow(self, hostname: str, served: set[str]) -> None:
        from console.services.processes import worker_queues

        while not self.stopped.wait(FOLLOW_HOSTS_SECONDS):
            try:
                for queue in sorted(set(worker_queues()) - served):
                    if app.control.add_consumer(queue, destination=[hostname], reply=True, timeout=5):
                        log.info("now serving queue %s of a new host", queue)
                        served.add(queue)
                    else:  # no answer from our own remote control yet: ask again next round
                        log.warning("could not add queue %s yet; trying again", queue)
            except Exception:  # the database or the broker away for a moment: try again at the next round
                log.warning("could not look for new hosts", exc_info=True)


app.steps["worker"].add(FollowHosts)


class HostHeartbeat(bootsteps.StartStopStep):
    """Writes, every FACET_HOST_HEARTBEAT_SECONDS, that this worker is alive for each host whose queue it
    consumes: beat's host check marks a host whose worker fell silent unreachable."""

    def __init__(self, worker, **options) -> None:
        super().__init__(worker, **options)
        self.stopped = threading.Event()

    def start(self, worker) -> None:
        threading.Thread(target=self.beat, name="host-heartbeat", daemon=True).start()

    def stop(self, worker) -> None:
        self.stopped.set()

    def beat(self) -> None:
        from django.conf import settings
        from django.db import connections

        from console.services.hosts import beat_workers

        every = settings.FACET_HOST_HEARTBEAT_SECONDS
        while True:
            try:  # the queues added by --follow-hosts are in consume_from too
                beat_workers([queue[len("host."):] for queue in app.amqp.queues.consume_from
                              if queue.startswith("host.")])
            except Exception:  # the database away for a moment: the next beat tries again
                log.warning("could not write the hosts' worker heartbeat", exc_info=True)
                connections.close_all()
            if self.stopped.wait(every):
                return


app.steps["worker"].add(HostHeartbeat)
