"""Guest Tools in the demo: mounted on a few running VMs of the first host, whose simulated guests run the
real agent (`manage.py sim_guests`, started by `serve`), so the demo shows live links from the start."""

from django.db import transaction

from console.core.actors import Actor
from console.core.tasks import run_here, sending_together
from console.models import VM, Cluster
from ngt.services import guest_tools

from ..models import GuestTools

DEMO_GUESTS = 3


def mount_guest_tools(cluster: Cluster) -> str:
    """Mount Guest Tools on up to DEMO_GUESTS running Linux VMs of the cluster's first host, the tasks run in
    this process (no worker runs yet). Nothing to do once that many have them."""
    host = cluster.hosts.order_by("name").first()
    running = VM.objects.filter(host=host, power_state=VM.PowerState.ON, is_template=False,
                                guest_os=VM.GuestOS.LINUX)
    missing = DEMO_GUESTS - GuestTools.objects.filter(vm__in=running, enabled=True).count()
    chosen = list(running.exclude(guest_tools__enabled=True).order_by("name")[:max(missing, 0)])
    if not chosen:
        return ""
    with transaction.atomic(), sending_together(deliver=run_here):
        for vm in chosen:
            guest_tools.request_mount(Actor.system(), vm)
    return f"Guest Tools mounted on {', '.join(vm.name for vm in chosen)} (their simulated guests link once served)"
