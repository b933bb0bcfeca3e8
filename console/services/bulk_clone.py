"""Bulk clone: many clones of one VM or template in one job, each with its own name, host, addresses and
per-clone values, validated as a whole before the first clone is made.

The interface (the API, the CLI and the wizard stand on it; keep it stable):

- `BulkCloneRequest`: the request. `source` (a VM or template), `count`, `name_pattern` (`{n}` with an
  optional format spec: `web-{n:03}` gives web-001...), `start_index` (the first n), `placement`
  (`{"policy": "spread"}`: over the cluster's hosts that take VMs, enabled and ready, by free memory; or
  `{"host": UUID or Host}`),
  `linked`, `options` (the VM options as `vms.request_clone` takes them, by option name: `customization`, a
  `CustomizationRequest`; `guest_tools`...), `per_clone` (a list of objects) or `per_clone_csv` (text with a
  header line), each row `name`, `hostname`, `ip` (the address of the clone's first NIC, in its network's
  static-IP pool) and any other key: the clone's own key-values for the options that take them (the
  customization's key-values); the rows are the clones in order and there are exactly `count` of them.
  An empty cell leaves the default (the pattern's name, a hostname from the name, the next free address).
  `power_on`.
- `plan_bulk_clone(request) -> Plan`: checks everything and decides every name, host, MAC and address;
  writes nothing. A bad request raises `InvalidRequest` (400) naming the field: `count`, `name_pattern`,
  `start_index`, `placement`, `linked`, `per_clone[i].column` or `per_clone_csv` (with "line L, column C
  (name)" in the message), or an option's own field; a source being created or deleted is a `Conflict`.
  `Plan.as_dict()` is the JSON of a dry run: the clones (n, name, hostname, host, NICs with MAC and IP,
  key-values) and the totals (VMs, vCPUs, memory, disk, IPs taken).
- `request_bulk_clone(actor, request) -> Task`: plans again, then in one transaction writes a parent task
  (`vm.bulk-clone`) and each clone's rows with its `vm.clone` child task exactly as `vms.request_clone` makes
  it, on the queue of its host. The parent's percent and message roll up from the children; cancel it with
  `console.core.tasks.control.request_cancel` (clones not started yet are dropped, made ones kept).
"""

import csv
import heapq
import io
import ipaddress
import secrets
import string
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum

from console.core import audit
from console.core.actors import Actor
from console.core.errors import InvalidRequest, check_field
from console.core.models import Task
from console.core.registry import NewVM, registry
from console.core.tasks import create_task, sending_together, start_bulk
from console.core.units import iec

from ..models import VM, Host, Network, Nic
from ..models.inventory import hostname_validator, name_validator
from . import addressing, vms

DEFAULT_MAX_CLONES = 1000
KNOWN_COLUMNS = ("name", "hostname", "ip")


def max_clones() -> int:
    """The most clones of one request: FACET_BULK_CLONE_MAX, else 1,000."""
    return int(getattr(settings, "FACET_BULK_CLONE_MAX", None) or DEFAULT_MAX_CLONES)


@dataclass
class BulkCloneRequest:
    source: VM
    count: int
    name_pattern: str
    start_index: int = 1
    placement: dict[str, Any] = field(default_factory=lambda: {"policy": "spread"})
    linked: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    per_clone: list[dict[str, Any]] | None = None
    per_clone_csv: str | None = None
    power_on: bool = False


@dataclass
class Row:
    """One clone's own values, and where they came from for error messages."""

    values: dict[str, str]
    line: int | None = None  # the CSV line
    columns: dict[str, int] = field(default_factory=dict)  # CSV column numbers, by name
    index: int = 0  # the position in per_clone

    def field(self, column: str) -> str:
        return "per_clone_csv" if self.line is not None else f"per_clone[{self.index}].{column}"

    def where(self, column: str) -> str:
        if self.line is None:
            return ""
        return f"line {self.line}, column {self.columns.get(column, 0)} ({column}): "

    def error(self, column: str, message: str) -> InvalidRequest:
        return InvalidRequest({self.field(column): [self.where(column) + message]})


@dataclass
class PlannedClone:
    n: int
    name: str
    hostname: str
    host: Host
    nics: list[Nic]  # unsaved rows with their MAC and address
    key_values: dict[str, str]
    checked: dict[str, Any]  # what the apps' check hooks returned

    def as_dict(self) -> dict:
        return {"n": self.n, "name": self.name, "hostname": self.hostname,
                "host": {"uuid": str(self.host.uuid), "name": self.host.name},
                "nics": [{"index": nic.index, "network": nic.network.name, "mac": nic.mac, "ip": nic.ip}
                         for nic in self.nics],
                "key_values": self.key_values}


@dataclass
class Plan:
    source: VM
    clones: list[PlannedClone]
    linked: bool
    power_on: bool
    disk_bytes_each: int

    @property
    def totals(self) -> dict[str, int]:
        count = len(self.clones)
        return {"vms": count, "vcpus": count * self.source.vcpus, "memory_bytes": count * self.source.memory_bytes,
                "disk_bytes": count * self.disk_bytes_each,
                "ips": sum(1 for clone in self.clones for nic in clone.nics if nic.ip)}

    def hosts(self) -> dict[str, int]:
        shares: dict[str, int] = {}
        for clone in self.clones:
            shares[clone.host.name] = shares.get(clone.host.name, 0) + 1
        return shares

    def as_dict(self) -> dict:
        return {"source": {"uuid": str(self.source.uuid), "name": self.source.name,
                           "is_template": self.source.is_template},
                "linked": self.linked, "power_on": self.power_on, "totals": self.totals, "hosts": self.hosts(),
                "clones": [clone.as_dict() for clone in self.clones]}


def plan_bulk_clone(request: BulkCloneRequest) -> Plan:
    """Check the whole request and decide every clone; nothing is written."""
    source = request.source
    vms.check_clone_source(source)
    _check_count(request.count)
    if request.linked and source.power_state in (VM.PowerState.ON, VM.PowerState.PAUSED):
        raise InvalidRequest({"linked": [
            f"VM {source.name} is {source.power_state}: a linked clone's disks are overlays of the source's, "
            "which must not change; power it off first, or make full clones"]})
    rows = per_clone_rows(request)
    names = _names(request, rows)
    hostnames = [_hostname(row, name) for row, name in zip(rows, names, strict=True)]
    extra_keys = sorted({key for row in rows for key in row.values if key not in KNOWN_COLUMNS})
    options = _per_clone_options(request, rows, extra_keys, names[0], hostnames[0])
    checked = vms.check_all_with_hooks([NewVM(cluster=source.cluster, name=name, hostname=hostname,
                                              guest_os=source.guest_os, source=source)
                                        for name, hostname in zip(names, hostnames, strict=True)], options)
    hosts = _placement(request)
    nics = _nics(source, rows)
    clones = [PlannedClone(n=request.start_index + i, name=names[i], hostname=hostnames[i], host=hosts[i],
                           nics=nics[i], checked=checked[i],
                           key_values={k: v for k, v in rows[i].values.items() if k not in KNOWN_COLUMNS})
              for i in range(request.count)]
    disk_bytes = source.disks.aggregate(total=Sum("size_bytes"))["total"] or 0
    return Plan(source=source, clones=clones, linked=request.linked, power_on=request.power_on,
                disk_bytes_each=disk_bytes)


def request_bulk_clone(actor: Actor, request: BulkCloneRequest) -> Task:
    """Plan, then write the parent task and every clone with its `vm.clone` child, sent together on commit."""
    plan = plan_bulk_clone(request)
    source = request.source
    targets = [vms.CloneTarget(name=c.name, host=c.host, hostname=c.hostname, nics=c.nics, checked=c.checked)
               for c in plan.clones]
    with transaction.atomic(), sending_together():
        parent = create_task(actor, "vm.bulk-clone", source, enqueue=False, params={
            "count": request.count, "name_pattern": request.name_pattern, "start_index": request.start_index,
            "linked": request.linked, "power_on": request.power_on, "totals": plan.totals})
        vms.write_clones(actor, source, targets, linked=request.linked, power_on=request.power_on, parent=parent)
        start_bulk(parent)
        audit.record(actor, "vm.bulk-clone", source, task=str(parent.uuid), count=request.count,
                     name_pattern=request.name_pattern, linked=request.linked)
    parent.refresh_from_db()
    return parent


def bulk_clone_label(task: Task) -> str:
    """How pages name the parent task (the API and the CLI keep its kind)."""
    return "Bulk Clone"


registry.task_labels.add("vm.bulk-clone", bulk_clone_label)


def _check_count(count: int) -> None:
    limit = max_clones()
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        raise InvalidRequest({"count": [f"give 1 to {limit} clones (the limit of one request)"]})


# --- the per-clone table -------------------------------------------------------------------------------
def per_clone_rows(request: BulkCloneRequest) -> list[Row]:
    """One row per clone: the table given (exactly `count` rows), else empty rows."""
    if request.per_clone is not None and request.per_clone_csv is not None:
        raise InvalidRequest({"per_clone": ["give per_clone or per_clone_csv, not both"]})
    if request.per_clone_csv is not None:
        rows, what, where = _csv_rows(request.per_clone_csv), "per_clone_csv", "data rows"
    elif request.per_clone is not None:
        rows, what, where = _object_rows(request.per_clone), "per_clone", "objects"
    else:
        return [Row(values={}, index=i) for i in range(request.count)]
    if len(rows) != request.count:
        raise InvalidRequest({what: [f"{len(rows)} {where} for {request.count} clones: give one per clone"]})
    return rows


def _csv_rows(text: str) -> list[Row]:
    reader = csv.reader(io.StringIO(text))
    try:
        table = [(number, cells) for number, cells in enumerate(reader, start=1)]
    except csv.Error as exc:
        raise InvalidRequest({"per_clone_csv": [f"line {reader.line_num}: not CSV ({exc})"]}) from None
    table = [(number, cells) for number, cells in table if cells]  # a blank line is no row
    if not table:
        raise InvalidRequest({"per_clone_csv": ["the table is empty: give a header line (name,hostname,ip,KEY...) "
                                                "and a row per clone"]})
    header_line, header = table[0]
    columns = [cell.strip() for cell in header]
    problems = []
    for number, column in enumerate(columns, start=1):
        if not column:
            problems.append(f"line {header_line}, column {number}: the header names no column")
        elif columns.index(column) != number - 1:
            problems.append(f"line {header_line}, column {number} ({column}): named twice")
    if problems:
        raise InvalidRequest({"per_clone_csv": problems})
    positions = {column: number for number, column in enumerate(columns, start=1)}
    rows = []
    for line, cells in table[1:]:
        if len(cells) > len(columns):
            raise InvalidRequest({"per_clone_csv": [
                f"line {line}, column {len(columns) + 1}: {len(cells)} cells for {len(columns)} columns"]})
        values = {column: cell.strip() for column, cell in zip(columns, cells, strict=False)}
        rows.append(Row(values=values, line=line, columns=positions, index=len(rows)))
    return rows


def _object_rows(objects: list) -> list[Row]:
    rows = []
    for i, values in enumerate(objects):
        if not isinstance(values, dict):
            raise InvalidRequest({f"per_clone[{i}]": ["give an object of column: value"]})
        row = Row(values={}, index=i)
        for key, value in values.items():
            if not isinstance(value, str | int | float | bool) and value is not None:
                raise row.error(str(key), "give a text value")
            row.values[str(key)] = "" if value is None else str(value).strip()
        rows.append(row)
    return rows


# --- names -------------------------------------------------------------------------------------------------
def pattern_names(pattern: str, start_index: int, count: int) -> list[str]:
    """The names a pattern gives for n = start_index ... start_index + count - 1 (no other check)."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError as exc:
        raise InvalidRequest({"name_pattern": [f"{pattern!r}: {exc}"]}) from None
    if any(name != "n" for name in fields):
        raise InvalidRequest({"name_pattern": [
            f"{pattern!r}: the only field is {{n}} (with a format such as {{n:03}}); "
            "double braces {{ }} for literal ones"]})
    if "n" not in fields:
        raise InvalidRequest({"name_pattern": [f"{pattern!r} has no {{n}}: every clone would get the same name "
                                               "(e.g. web-{n:03} gives web-001, web-002...)"]})
    if isinstance(start_index, bool) or not isinstance(start_index, int) or start_index < 0:
        raise InvalidRequest({"start_index": ["give a whole number from 0"]})
    try:
        return [pattern.format(n=n) for n in range(start_index, start_index + count)]
    except (ValueError, TypeError) as exc:
        raise InvalidRequest({"name_pattern": [f"{pattern!r}: {exc}"]}) from None


def _names(request: BulkCloneRequest, rows: list[Row]) -> list[str]:
    from_pattern = pattern_names(request.name_pattern, request.start_index, request.count)
    names = [row.values.get("name") or generated for row, generated in zip(rows, from_pattern, strict=True)]
    first_of: dict[str, int] = {}
    for i, (row, name) in enumerate(zip(rows, names, strict=True)):
        given = bool(row.values.get("name"))
        try:
            check_field(name_validator, name, "name")
        except InvalidRequest as exc:
            message = " ".join(exc.errors["name"])
            if given:
                raise row.error("name", f"{name!r}: {message}") from None
            raise InvalidRequest({"name_pattern": [f"gives {name!r} for n={request.start_index + i}: {message}"]}
                                 ) from None
        if name in first_of:
            other = first_of[name]
            if given:
                raise row.error("name", f"{name!r} is also the name of clone {other + 1}")
            raise InvalidRequest({"name_pattern": [
                f"gives {name!r} twice (n={request.start_index + other} and n={request.start_index + i}): "
                "its format must keep the numbers apart"]})
        first_of[name] = i
    taken = set(VM.objects.filter(cluster=request.source.cluster, name__in=names).values_list("name", flat=True))
    for i, (row, name) in enumerate(zip(rows, names, strict=True)):
        if name in taken:
            if row.values.get("name"):
                raise row.error("name", f"a VM named {name!r} already exists in cluster "
                                        f"{request.source.cluster.name}")
            raise InvalidRequest({"name_pattern": [
                f"gives {name!r} for n={request.start_index + i}, and a VM of that name exists "
                f"({len(taken)} of the names are taken); choose another pattern or start index"]})
    return names


def _hostname(row: Row, name: str) -> str:
    hostname = row.values.get("hostname", "")
    if hostname:
        try:
            check_field(hostname_validator, hostname, "hostname")
        except InvalidRequest as exc:
            raise row.error("hostname", f"{hostname!r}: {' '.join(exc.errors['hostname'])}") from None
        return hostname
    return vms.hostname_from(name)


# --- options (the customization...) -------------------------------------------------------------------
def _per_clone_options(request: BulkCloneRequest, rows: list[Row], keys: list[str], name: str,
                       hostname: str) -> list[dict[str, Any]]:
    """Each clone's VM options: the shared ones, with the options that take key-values given the row's."""
    takers = {option: entry for option, entry in registry.vm_options.items()
              if entry.per_clone and request.options.get(option) is not None}
    if keys:
        source = request.source
        new_vm = NewVM(cluster=source.cluster, name=name, hostname=hostname, guest_os=source.guest_os,
                       source=source)
        unknown = set(keys)
        for option, entry in takers.items():
            unknown &= set(entry.unknown_keys(request.options[option], keys, new_vm) if entry.unknown_keys
                           else keys)
        if unknown:
            raise _unknown_columns(request, rows, sorted(unknown), takers)
    options = []
    for row in rows:
        key_values = {key: value for key, value in row.values.items() if key not in KNOWN_COLUMNS and value != ""}
        clone_options = dict(request.options)
        for option, entry in takers.items():
            clone_options[option] = entry.per_clone(request.options[option], key_values)
        options.append(clone_options)
    return options


def _unknown_columns(request: BulkCloneRequest, rows: list[Row], unknown: list[str], takers: dict) -> InvalidRequest:
    reason = ("the script does not use it" if takers else
              "no option of the request takes per-clone values (give a customization)")
    first = rows[0]
    if first.line is not None:
        header = first.line - 1 if first.line > 1 else 1
        return InvalidRequest({"per_clone_csv": [
            f"line {header}, column {first.columns[key]} ({key}): unknown column: {reason}; "
            f"known columns are {', '.join(KNOWN_COLUMNS)} and the script's keys" for key in unknown]})
    return InvalidRequest({f"per_clone[{row.index}].{key}": [f"unknown column: {reason}"]
                           for key in unknown for row in rows[:1]})


# --- placement -----------------------------------------------------------------------------------------
def _placement(request: BulkCloneRequest) -> list[Host]:
    """Each clone's host. Memory is not overcommitted: a host takes the clones its free memory holds (its
    memory less that of its VMs on, paused or being created, which the clones will be)."""
    source, count = request.source, request.count
    cluster = source.cluster
    placement = request.placement or {"policy": "spread"}
    if not isinstance(placement, dict) or set(placement) not in ({"policy"}, {"host"}):
        raise InvalidRequest({"placement": ['give {"policy": "spread"} or {"host": UUID}']})
    if "policy" in placement and placement["policy"] != "spread":
        raise InvalidRequest({"placement": [f"unknown policy {placement['policy']!r}; use spread, or name a host"]})
    if "host" in placement:
        host = placement["host"]
        if not isinstance(host, Host):
            host = cluster.hosts.filter(uuid=_uuid(host)).first()
            if host is None:
                raise InvalidRequest({"placement": [f"no host of cluster {cluster.name} has the uuid "
                                                    f"{placement['host']!r}"]})
        hosts = [vms.place(cluster, host, source.vcpus, source.memory_bytes, field_name="placement")]
    else:
        hosts = [h for h in cluster.hosts.order_by("name") if h.takes_vms and h.cpus >= source.vcpus]
        if not hosts:
            raise InvalidRequest({"placement": [
                f"no enabled host of cluster {cluster.name} has {source.vcpus} CPUs"]})
    free = {host.pk: host.memory_bytes - vms.memory_in_use(host) for host in hosts}
    need = source.memory_bytes
    if len(hosts) == 1:
        host = hosts[0]
        if free[host.pk] < count * need:
            raise InvalidRequest({"placement": [
                f"host {host.name} has {iec(max(free[host.pk], 0))} of memory free; its share, {count} clones of "
                f"{iec(need)}, needs {iec(count * need)} (room for {max(free[host.pk], 0) // need})"]})
        return [host] * count
    # Spread: each clone to the host with the most memory left, as one clone after the other would go.
    heap = [(-free[host.pk], host.name, host) for host in hosts]
    heapq.heapify(heap)
    chosen = []
    for _ in range(count):
        left, name, host = heapq.heappop(heap)
        if -left < need:
            room = sum(max(f, 0) // need for f in free.values())
            detail = ", ".join(f"{h.name} {iec(max(free[h.pk], 0))}" for h in hosts)
            raise InvalidRequest({"placement": [
                f"the enabled hosts have room for {room} clones of {iec(need)} ({detail} free); the plan has "
                f"{count}"]})
        chosen.append(host)
        heapq.heappush(heap, (left + need, name, host))
    return chosen


def _uuid(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidRequest({"placement": [f"{value!r} is not a host uuid"]}) from None


# --- addresses -----------------------------------------------------------------------------------------
def _nics(source: VM, rows: list[Row]) -> list[list[Nic]]:
    """Every clone's NICs: new MACs, and on the source's static NICs an address of the pool (the row's `ip`
    for the first NIC, else the next free one)."""
    source_nics = list(source.nics.select_related("network").order_by("index"))
    requested = _requested_ips(source, source_nics, rows)
    reserved = {source_nics[0].network_id: set(requested.values())} if requested else {}
    free = _free_addresses(source_nics, reserved, rows)
    macs = _new_macs(len(rows) * len(source_nics))
    result = []
    for i in range(len(rows)):
        clone_nics = []
        for position, nic in enumerate(source_nics):
            if position == 0 and i in requested:
                ip = requested[i]
            elif nic.ip:
                ip = next(free[nic.network_id])
            else:
                ip = None  # DHCP, as on the source
            clone_nics.append(Nic(index=nic.index, network=nic.network, mac=macs.pop(), ip=ip))
        result.append(clone_nics)
    return result


def _requested_ips(source: VM, source_nics: list[Nic], rows: list[Row]) -> dict[int, str]:
    """Row position -> the address its `ip` cell gives the first NIC, checked against the pool."""
    requested: dict[int, str] = {}
    first_row_of: dict[str, int] = {}
    for i, row in enumerate(rows):
        text = row.values.get("ip", "")
        if not text:
            continue
        if not source_nics:
            raise row.error("ip", f"VM {source.name} has no NIC to give {text} to")
        network = source_nics[0].network
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise row.error("ip", f"{text!r} is not an IP address") from None
        if int(address) not in network.pool():
            pool = (f"{network.pool_start} to {network.pool_end}" if network.pool() else "none")
            raise row.error("ip", f"{address} is outside the static-IP pool of network {network.name} ({pool})")
        if str(address) == network.gateway:
            raise row.error("ip", f"{address} is the gateway of network {network.name}")
        if str(address) in first_row_of:
            raise row.error("ip", f"{address} is also the address of clone {first_row_of[str(address)] + 1}")
        first_row_of[str(address)] = i
        requested[i] = str(address)
    if requested:
        network = source_nics[0].network
        taken = set(Nic.objects.filter(network=network, ip__in=list(requested.values()))
                    .values_list("ip", flat=True))
        for i, address in requested.items():
            if address in taken:
                raise rows[i].error("ip", f"{address} is already assigned on network {network.name}")
    return requested


def _free_addresses(source_nics: list[Nic], reserved: dict[int, set[str]], rows: list[Row]) -> dict:
    """Per network that clones take automatic addresses on, an iterator over enough free pool addresses."""
    needed: dict[int, int] = {}
    networks: dict[int, Network] = {}
    for i, _ in enumerate(rows):
        for position, nic in enumerate(source_nics):
            given = position == 0 and rows[i].values.get("ip")
            if nic.ip and not given:
                needed[nic.network_id] = needed.get(nic.network_id, 0) + 1
                networks[nic.network_id] = nic.network
    free = {}
    for network_id, count in needed.items():
        network = networks[network_id]
        used = set(Nic.objects.filter(network=network, ip__isnull=False).values_list("ip", flat=True))
        used |= reserved.get(network_id, set())
        addresses = []
        for number in network.pool():
            candidate = str(ipaddress.ip_address(number))
            if candidate not in used and candidate != network.gateway:
                addresses.append(candidate)
                if len(addresses) == count:
                    break
        if len(addresses) < count:
            raise InvalidRequest({"count": [
                f"the static-IP pool of network {network.name} has {len(addresses)} free addresses; the clones "
                f"need {count}" if network.pool() else f"network {network.name} has no static-IP pool"]})
        free[network_id] = iter(addresses)
    return free


def _new_macs(count: int) -> list[str]:
    """`count` MACs in the KVM range, distinct, and used by no NIC (one query per round)."""
    macs: set[str] = set()
    while len(macs) < count:
        batch = {addressing.MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))
                 for _ in range(count - len(macs))} - macs
        taken = set(Nic.objects.filter(mac__in=batch).values_list("mac", flat=True))
        macs |= batch - taken
    return sorted(macs)
