"""The quiesce hook where no agent can answer: the snapshot is still taken, crash-consistent, saying why."""

import socket

from console.core.registry import Consistency
from ngt.models import GuestTools
from ngt.services import quiesce


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_service_leaves_the_snapshot_crash_consistent(vm, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    GuestTools.objects.create(vm=vm, enabled=True, link_active=True, capabilities=["vss-snapshot"])
    consistency = Consistency(False, "")
    taken = []
    with quiesce.quiesce(vm, consistency):
        taken.append(True)
    assert taken and not consistency.consistent
    assert consistency.note.startswith("crash-consistent: the Guest Tools Service could not be reached")
