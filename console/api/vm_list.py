"""The VM list's items as plain dicts: the JSON of `VMSerializer`, without model instances.

Through `VMSerializer`, a page of 100 VMs makes about 800 model instances (each VM with its cluster and
host, its NICs and their networks, disks and their containers, CD-ROMs and their images), a prefetch
manager per VM and relation, and a DRF field call per value: about 50 ms of CPU, most of a request. Here
the page is read with `values()`, each related set with one `values_list()` query for the whole page,
and the dicts are built directly. The list's filters, search and ordering still come from the viewset's
FilterSet and ordering backends; only the reading and the writing of the rows differ.

`VMSerializer` stays the API's definition of a VM (detail, schema): a test checks that both give the same
JSON, so a field added there must be added here too.
"""

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.utils import timezone
from rest_framework.fields import DateTimeField

from console.core.api.pagination import Pagination

from ..models import VM, CdRom, Nic, VirtualDisk

VM_COLUMNS = ("id", "uuid", "name", "hostname", "description", "cluster__uuid", "host__uuid", "host__name",
              "power_state", "vcpus", "memory_bytes", "guest_os", "is_template", "parent__uuid", "created_at",
              "updated_at")

# JSON key -> column, in VMSerializer's nested serializers' field order.
NIC_COLUMNS = {"index": "index", "network": "network__uuid", "network_name": "network__name", "mac": "mac",
               "ip": "ip"}
DISK_COLUMNS = {"uuid": "uuid", "index": "index", "size_bytes": "size_bytes", "container": "storage_container__uuid",
                "file_name": "file_name", "backing_file": "backing_file"}
CDROM_COLUMNS = {"slot": "slot", "iso_path": "iso_path", "purpose": "purpose", "image": "image__uuid"}


class VMRowPaginator(Paginator):
    """Counts the filtered VMs as given, and reads only the page as rows of `VM_COLUMNS`. Asking for the
    rows before paginating would put their joins (cluster, host, parent) into the count query too."""

    def _get_page(self, object_list: QuerySet[VM], *args, **kwargs):
        # The page's ids are sorted and sliced in a subquery that joins nothing, and only those rows are
        # read with their joins: otherwise SQLite joins every matching VM before sorting (3-5 ms of 10,000).
        ordering = object_list.query.order_by
        rows = VM.objects.filter(id__in=object_list.values("id")).order_by(*ordering).values(*VM_COLUMNS)
        return super()._get_page(rows, *args, **kwargs)


class VMRowPagination(Pagination):
    """The API's pagination, whose pages are rows for `vm_list_items`."""

    django_paginator_class = VMRowPaginator


def vm_list_items(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The list items of a page of `VMRowPaginator` rows, in its order: three queries, whatever the page size."""
    vm_ids = [row["id"] for row in rows]
    nics = children_by_vm(Nic, vm_ids, NIC_COLUMNS, "index")
    for nic in (nic for vm_nics in nics.values() for nic in vm_nics):
        nic["ips"] = [nic["ip"]] if nic["ip"] else []
    disks = children_by_vm(VirtualDisk, vm_ids, DISK_COLUMNS, "index")
    cdroms = children_by_vm(CdRom, vm_ids, CDROM_COLUMNS, "slot")
    # DRF's own datetime formatting, as VMSerializer's timestamp fields apply it. The request's time zone
    # is looked up once here: DRF would look it up for each value (about 1 ms per page).
    timestamp = DateTimeField(default_timezone=timezone.get_current_timezone()).to_representation
    return [vm_item(row, nics[row["id"]], disks[row["id"]], cdroms[row["id"]], timestamp) for row in rows]


def children_by_vm(model: type[Model], vm_ids: list[int], columns: dict[str, str],
                   order: str) -> defaultdict[int, list[dict[str, Any]]]:
    """The rows of `model` belonging to these VMs, as dicts of `columns` in `order`, grouped by VM id."""
    keys = list(columns)
    uuid_keys = [key for key, column in columns.items() if column.endswith("uuid")]
    grouped = defaultdict(list)
    # Ordering by vm_id rather than the model's default ("vm", which means the VM's name) spares a join.
    query = (model.objects.filter(vm_id__in=vm_ids).order_by("vm_id", order)
             .values_list("vm_id", *columns.values()))
    for vm_id, *values in query:
        item = dict(zip(keys, values, strict=True))
        for key in uuid_keys:
            item[key] = text(item[key])
        grouped[vm_id].append(item)
    return grouped


def vm_item(row: dict[str, Any], nics: list[dict], disks: list[dict], cdroms: list[dict],
            timestamp: Callable[[datetime], str]) -> dict[str, Any]:
    """One VM as `VMSerializer` writes it."""
    host = {"uuid": text(row["host__uuid"]), "name": row["host__name"]} if row["host__uuid"] else None
    return {
        "uuid": text(row["uuid"]), "name": row["name"], "hostname": row["hostname"],
        "description": row["description"], "cluster": text(row["cluster__uuid"]), "host": host,
        "power_state": row["power_state"], "vcpus": row["vcpus"], "memory_bytes": row["memory_bytes"],
        "guest_os": row["guest_os"], "is_template": row["is_template"], "parent": text(row["parent__uuid"]),
        "nics": nics, "disks": disks, "cdroms": cdroms,
        "created_at": timestamp(row["created_at"]), "updated_at": timestamp(row["updated_at"]),
    }


def text(value: UUID | None) -> str | None:
    """A uuid as the JSON text DRF writes. Done here because the JSON encoder would call back into Python
    for each UUID object, about 1 ms per page of 100 VMs."""
    return None if value is None else str(value)
