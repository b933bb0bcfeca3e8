from django.db.models import Count, Q, Sum
from django.shortcuts import render

from console.core.access import ADMIN, has_role
from console.core.drivers import shown_uri
from console.core.models import Task
from console.core.tasks.entities import link_entities
from console.core.views import role_required

from ..models import VM, Host, StorageContainer
from ..services import metrics
from .charts import chart

ACTIVE = [VM.PowerState.ON, VM.PowerState.PAUSED]


def bar(used: int, total: int) -> dict:
    """Numbers for an inline SVG bar: the used share, capped at 100 %, and whether it is over."""
    percent = round(100 * used / total) if total else 0
    return {"used": used, "total": total, "percent": min(percent, 100), "label": percent, "over": used > total}


@role_required()
def dashboard(request):
    hosts = Host.objects.annotate(
        vm_count=Count("vms", filter=Q(vms__is_template=False)),
        vcpus_used=Sum("vms__vcpus", filter=Q(vms__power_state__in=ACTIVE)),
        memory_used=Sum("vms__memory_bytes", filter=Q(vms__power_state__in=ACTIVE)),
    )
    is_admin = has_role(request.user, ADMIN)
    # A driver URI's query may name the console's key files: others read scheme, host and path.
    host_rows = [{"host": h, "driver": h.driver_uri if is_admin else shown_uri(h.driver_uri),
                  "vm_count": h.vm_count, "cpu": bar(h.vcpus_used or 0, h.cpus),
                  "memory": bar(h.memory_used or 0, h.memory_bytes),
                  "usage": chart(metrics.period_series(h.uuid, "hour"), f"{h.name} CPU", {"cpu_percent": "CPU"}, "%",
                                 top=100)} for h in hosts]
    states = dict(VM.objects.filter(is_template=False).values_list("power_state").annotate(n=Count("id")))
    total = sum(states.values())
    storage_containers = StorageContainer.objects.annotate(provisioned=Sum("disks__size_bytes"))
    return render(request, "console/dashboard.html", {
        "hosts": host_rows,
        "cpu_total": sum(h.cpus for h in hosts), "memory_total": sum(h.memory_bytes for h in hosts),
        "states": [(state, label, states.get(state, 0)) for state, label in VM.PowerState.choices],
        "donut": _donut(states, total),
        "vm_total": total,
        "template_count": VM.objects.filter(is_template=True).count(),
        "storage_containers": [{"storage_container": c, "usage": bar(c.provisioned or 0, c.capacity_bytes)}
                               for c in storage_containers],
        "top_vms": metrics.top_vms(), "metrics_interval": metrics.interval(),
        "latest_tasks": link_entities(Task.objects.filter(parent__isnull=True).select_related("created_by")[:8]),
    })


def _donut(states: dict, total: int) -> list[dict]:
    """Segments of the power-state donut as SVG stroke dash offsets (circumference 100)."""
    segments, offset = [], 0.0
    for state, _ in VM.PowerState.choices:
        share = 100 * states.get(state, 0) / total if total else 0
        if share:
            segments.append({"state": state, "share": round(share, 2), "offset": round(25 - offset, 2)})
            offset += share
    return segments
