"""One FilterSet per listed model, shared by the REST API and the console's list views."""

import functools
import uuid

import django_filters as filters
from django.db.models import Q

from console.core.models import AuditEvent, Task
from console.core.registry import registry

from .models import VM


class FilterSet(filters.FilterSet):
    """A form's "Any" option sends an empty value; for a multiple-choice filter that means no filter."""

    def __init__(self, data=None, *args, **kwargs):
        if data is not None:
            data = data.copy()
            for name, declared in self.base_filters.items():
                if isinstance(declared, filters.MultipleChoiceFilter) and name in data:
                    values = data.getlist(name) if hasattr(data, "getlist") else data[name]
                    values = [v for v in (values if isinstance(values, list) else [values]) if v]
                    if hasattr(data, "setlist"):
                        data.setlist(name, values)
                    else:
                        data[name] = values
        super().__init__(data, *args, **kwargs)


class VMFilterSet(FilterSet):
    search = filters.CharFilter(method="filter_search", label="Name contains")
    power_state = filters.MultipleChoiceFilter(choices=VM.PowerState.choices, distinct=False)
    host = filters.CharFilter(method="filter_host", label="Host (uuid or name)")
    cluster = filters.UUIDFilter(field_name="cluster__uuid")
    is_template = filters.BooleanFilter()
    guest_os = filters.ChoiceFilter(choices=VM.GuestOS.choices)

    class Meta:
        model = VM
        fields = ["search", "power_state", "host", "cluster", "is_template", "guest_os"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(name__icontains=value.strip()) if value.strip() else queryset


    def filter_host(self, queryset, name, value):
        field = "host__uuid" if _looks_like_uuid(value) else "host__name"
        return queryset.filter(**{field: value})


class TaskFilterSet(FilterSet):
    status = filters.MultipleChoiceFilter(choices=Task.Status.choices, distinct=False)
    kind = filters.CharFilter()
    entity = filters.UUIDFilter(field_name="entity_uuid")
    parent = filters.CharFilter(method="filter_parent", label="Parent task uuid, or 'none' for top-level tasks")

    class Meta:
        model = Task
        fields = ["status", "kind", "entity", "parent"]

    def filter_parent(self, queryset, name, value):
        if value == "none":
            return queryset.filter(parent__isnull=True)
        return queryset.filter(parent__uuid=value) if _looks_like_uuid(value) else queryset.none()


class AuditEventFilterSet(FilterSet):
    user = filters.CharFilter(field_name="username")
    action = filters.CharFilter(field_name="action", lookup_expr="startswith")
    entity = filters.UUIDFilter(field_name="entity_uuid")
    since = filters.IsoDateTimeFilter(field_name="time", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="time", lookup_expr="lte")
    search = filters.CharFilter(method="filter_search")

    class Meta:
        model = AuditEvent
        fields = ["user", "action", "entity", "since", "until", "search"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(entity_name__icontains=value) | Q(action__icontains=value))


def _looks_like_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@functools.cache
def vm_filterset() -> type[VMFilterSet]:
    """VMFilterSet with the filters other apps registered (Guest Tools state...), made once they all have."""
    registered = {name: filters.ChoiceFilter(method=lambda queryset, _name, value, entry=entry: entry.apply(
                      queryset, value), label=entry.label, choices=entry.choices)
                  for name, entry in registry.vm_filters.items()}
    return type("VMFilterSet", (VMFilterSet,), registered)
