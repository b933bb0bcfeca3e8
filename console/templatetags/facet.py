from pathlib import PurePath

from django import template

from console.core.tasks import kinds
from console.core.units import iec

register = template.Library()

@register.filter(name="iec")
def iec_filter(value) -> str:
    """Bytes as people read them: 4 GiB, 512 MiB, 1.5 TiB."""
    try:
        return iec(float(value or 0))
    except (TypeError, ValueError):
        return ""


@register.filter
def ip_addresses(vm) -> list[str]:
    """Static addresses of the VM's NICs, then those its guest agent reported, each once."""
    found = [nic.ip for nic in vm.nics.all() if nic.ip]
    guest_tools = getattr(vm, "guest_tools", None)  # a VM without Guest Tools has no such row
    for ip in (guest_tools.ip_addresses if guest_tools else []):
        if ip not in found:
            found.append(ip)
    return found


@register.filter
def file_name(path: str) -> str:
    return PurePath(path).name if path else ""


@register.filter
def get(mapping, key):
    return mapping.get(key) if mapping else None


@register.simple_tag
def sort_link(current: str, field: str) -> str:
    """The ordering a column header links to: ascending first, then descending."""
    return f"-{field}" if current == field else field


@register.filter
def task_label(task) -> str:
    """What people call the task: "Clone VM" for a `vm.clone` (the API and CLI keep the kind)."""
    return kinds.task_label(task)


@register.filter
def task_entity(task) -> str:
    """What the task is about, for people: a bulk task's VM count (its stored name keeps the API's words)."""
    if task.kind == "vm.bulk":
        return f"{task.params.get('count', 0)} VMs"
    return task.entity_name
