"""The table of nouns and verbs: each verb is one call of the REST API under /api/v1/ (method, path,
required keys, optional keys) and how its answer is shown. Adding a command is adding a line here."""

from itertools import zip_longest
from pathlib import Path
from typing import TextIO

from . import output as o
from . import values as v
from .errors import UsageError
from .session import login, logout
from .spec import Key, Lookup, Noun, Verb

POWER_ACTIONS = {
    "power-on": "power a VM on",
    "power-off": "power a VM off at once (pulls the plug)",
    "reset": "reset a running VM at once",
    "shutdown": "ask the guest to shut down (ACPI)",
    "reboot": "ask the guest to reboot (ACPI)",
    "guest-shutdown": "ask the Guest Tools agent to shut the guest down",
    "guest-reboot": "ask the Guest Tools agent to reboot the guest",
    "pause": "pause a running VM (its memory stays; resume goes on)",
    "resume": "resume a paused VM",
}


def ordering(text: str) -> str:
    """`-memory_bytes` (the API's field names); `-memory-bytes` is read the same way."""
    fields = v.listed(v.text)(text)
    return ",".join(("-" if f.startswith("-") else "") + f.lstrip("-").replace("-", "_") for f in fields)


def one_or_zero(text: str) -> str:
    return "1" if v.boolean(text) else "0"


def task_note(task: dict) -> str:
    return f"Follow it with: facet task get task-id={task['uuid']} --wait"


def token_note(token: dict) -> str:
    return f"Token {token.get('name')!r} created ({token.get('uuid')}); it is shown only this once."


# Keys shared by several verbs.
SEARCH = Key("search", "TEXT", "names containing this text")
ORDERING = Key("ordering", "FIELD", "sort by this field of the API's answer (e.g. -memory_bytes); "
                                    "'-' first for descending, commas for several", ordering)
PAGE_SIZE = Key("page-size", "N", "results per page, up to the server's maximum (500)", v.integer(1))
LIST_KEYS = (ORDERING, PAGE_SIZE)
VM_ID = Key("vm-id", "NAME|UUID", "the VM's name or uuid", v.uuid_or_name, names="/vms/", noun="VM")
VM_FILTERS = (
    SEARCH,
    Key("power-state", "STATE[,STATE]", "on, off, paused, creating, deleting, unknown", v.listed(v.text)),
    Key("host", "NAME|UUID", "VMs placed on this host"),
    Key("is-template", "BOOL", "true: templates only; false: VMs only", v.boolean),
)
NEW_NAME = Key("name", "NAME", "the new VM's name")
HOST_UUID = Key("host", "NAME|UUID", "the host to place it on; omit for automatic placement", v.uuid_or_name,
                names="/hosts/", noun="host")
POWER_ON = Key("power-on", "BOOL", "power it on once made", v.boolean)
TASK_ID = Key("task-id", "UUID", "the task's uuid", v.uuid_text)
IMAGE_ISO = Key("image", "NAME|UUID", "the ISO image to insert", v.uuid_or_name, names="/images/", noun="image")
SLOT = Key("slot", "N", "the CD-ROM slot (0 to 11)", v.integer(0, 11))
FREE_SLOT = Key("slot", "N", "the CD-ROM slot (0 to 11); default: an empty one", v.integer(0, 11))


def create_vm_body(fields: dict) -> dict:
    """`disk=10G,20G` -> `disks`, `network=A,B ip=auto` -> `nics` (IPs pair with networks in order)."""
    body = dict(fields)
    if "disks" in body:
        body["disks"] = [{"size_bytes": n} for n in body["disks"]]
    networks, ips = body.pop("nics", []), body.pop("ip", [])
    if len(ips) > len(networks):
        raise UsageError(f"ip: {len(ips)} address(es) for {len(networks)} network(s); "
                         "give network=NAME|UUID[,...] with one network per address")
    if networks:
        body["nics"] = [{"network": net, **({"ip": ip} if ip else {})} for net, ip in zip_longest(networks, ips)]
    return body


def bulk_body(fields: dict) -> dict:
    """`vm-ids=` becomes `uuids`; the filter keys become `filter`, as the list takes them."""
    body = dict(fields)
    action, uuids = body.pop("action"), body.pop("uuids", None)
    everything, count = body.pop("all", False), body.pop("confirm_count", None)
    confirm = {} if count is None else {"confirm_count": count}
    filter_names = ", ".join(k.name for k in VM_FILTERS)
    if uuids is not None and (body or everything):
        raise UsageError(f"vm-ids: give either vm-ids or filter keys ({filter_names}) or all=yes, not both")
    if uuids is None and not body and not everything:
        raise UsageError(f"say which VMs: vm-ids=UUID[,UUID], filter keys ({filter_names}), or all=yes")
    if uuids is not None:
        return {"action": action, "uuids": uuids, **confirm}
    return {"action": action, "filter": body, **({"all": True} if everything else {}), **confirm}


def table_file(path: str) -> str:
    """A per-clone table (CSV) as text; the console checks it, naming the line and column of a bad cell."""
    try:
        return Path(path).expanduser().read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def bulk_clone_body(fields: dict) -> dict:
    """`host=UUID` places every clone there (`placement`); without it they spread over the hosts."""
    body = dict(fields)
    host = body.pop("placement", None)
    body["placement"] = {"host": host} if host else {"policy": "spread"}
    return body


def show_plan(plan: dict, out: TextIO) -> None:
    """A dry run's plan: the totals, the hosts' shares and every clone."""
    totals = plan["totals"]
    out.write(f"{totals['vms']} clones of {plan['source']['name']}: {totals['vcpus']} vCPUs, "
              f"{v.format_size(totals['memory_bytes'])} memory, {v.format_size(totals['disk_bytes'])} disk, "
              f"{totals['ips']} IPs; " + ", ".join(f"{n} on {host}" for host, n in plan["hosts"].items()) + "\n")
    o.table(("N", o.field("n")), ("NAME", o.field("name")), ("HOSTNAME", o.field("hostname")),
            ("HOST", o.field("host.name")), ("MACS", lambda c: ",".join(nic["mac"] for nic in c["nics"])),
            ("IPS", lambda c: ",".join(nic["ip"] or "dhcp" for nic in c["nics"])))(plan["clones"], out)


BULK_CLONE_KEYS = (
    (VM_ID, Key("count", "N", "how many clones (the console says its limit)", v.integer()),
     Key("name-pattern", "PATTERN", "the clones' names with {n}: web-{n:03} gives web-001, web-002...")),
    (Key("start-index", "N", "the first n (default 1)", v.integer(0)),
     Key("host", "UUID", "put every clone on this host (default: spread over the enabled hosts by free "
                         "memory)", v.uuid_text, field="placement"),
     Key("per-clone", "FILE.csv", "a table: a header name,hostname,ip,KEY... and a row per clone (empty "
                                  "cells keep the defaults; KEY columns are the clone's key-values)", table_file,
         field="per_clone_csv"),
     Key("linked", "BOOL", "linked clones: disks start as overlays of the source's", v.boolean), POWER_ON),
)


def inventory(path: str, id_key: str, what: str, columns: o.Table, filters: tuple[Key, ...] = ()) -> dict[str, Verb]:
    """`list` and `get` of an inventory object."""
    return {
        "list": Verb(f"list {what}s", "GET", path, optional=filters + LIST_KEYS, present=columns),
        "get": Verb(f"show one {what}", "GET", path + "{" + id_key + "}/",
                    required=(Key(id_key, "UUID", f"the {what}'s uuid", v.uuid_text),)),
    }


def task_verb(help_text: str, method: str, path: str, required: tuple[Key, ...] = (VM_ID,),
              optional: tuple[Key, ...] = (), **extra) -> Verb:
    """A change: the API answers 202 with the task doing it, which --wait follows."""
    return Verb(help_text, method, path, required, optional, present=o.show_task, task=True, note=task_note, **extra)


def detach_body(fields: dict) -> dict:
    return {**fields, "keep": True}


DISK_INDEX = Key("index", "N", "the disk's number (see vm get)", v.integer(0))
NIC_INDEX = Key("index", "N", "the NIC's number (see vm get)", v.integer(0))
NIC_IP = Key("ip", "auto|ADDR", "a static address ('auto': the next free pool address); omit for DHCP", v.ip_or_auto)
UNMANAGED_TABLE = o.table(
    ("NAME", o.field("name")), ("UUID", o.field("uuid")), ("STATE", o.field("state")), ("VCPUS", o.field("vcpus")),
    ("MEMORY", o.size("memory_bytes")),
    ("ADOPTABLE", lambda d: "yes" if not d.get("problems") else "no: " + "; ".join(d["problems"])))
# Day-2 changes of a VM (console/services/vm_edit.py, vm_devices.py).
VM_DAY2 = {
    "update": task_verb(
        "edit a VM: hot where the guest can take it, else at its next power cycle (shown as pending)",
        "PATCH", "/vms/{vm-id}/",
        optional=(Key("name", "NAME", "a new name"), Key("description", "TEXT", "free text"),
                  Key("vcpus", "N", "virtual CPUs, up to the host's", v.integer(1, 256)),
                  Key("memory", "SIZE", "memory, e.g. 4G", v.size, field="memory_bytes"),
                  Key("boot-order", "DEV[,DEV]", "hd, cdrom, network in order", v.listed(v.text)),
                  Key("high-availability", "BOOL", "true: restarted on another host when its host fails",
                      v.boolean, field="high_availability"))),
    "disk-add": task_verb(
        "add a disk: empty (size=), or a copy or linked clone of a disk image (image=)", "POST", "/vms/{vm-id}/disks/",
        optional=(Key("size", "SIZE", "the disk's size, e.g. 20G", v.size, field="size_bytes"),
                  Key("image", "UUID", "a disk image to copy", v.uuid_text),
                  Key("linked", "BOOL", "a linked clone of the image rather than a copy", v.boolean),
                  Key("storage-container", "UUID", "where the disk file goes", v.uuid_text))),
    "disk-grow": task_verb("grow a disk, online if the VM runs (never shrinks)", "PATCH",
                           "/vms/{vm-id}/disks/{index}/",
                           required=(VM_ID, DISK_INDEX,
                                     Key("size", "SIZE", "the new size", v.size, field="size_bytes"))),
    "disk-detach": task_verb("detach a disk, keeping its data as a disk image", "DELETE", "/vms/{vm-id}/disks/{index}/",
                             required=(VM_ID, DISK_INDEX), shape=detach_body),
    "disk-delete": task_verb("delete a disk and its data", "DELETE", "/vms/{vm-id}/disks/{index}/",
                             required=(VM_ID, DISK_INDEX)),
    "nic-add": task_verb("add a NIC (hot-plugged if the VM runs)", "POST", "/vms/{vm-id}/nics/",
                         required=(VM_ID, Key("network", "UUID", "its network", v.uuid_text)),
                         optional=(NIC_IP, Key("mac", "MAC", "its MAC (default: a new one)"))),
    "nic-set-network": task_verb("move a NIC to another network (it keeps its MAC)", "PATCH",
                                 "/vms/{vm-id}/nics/{index}/",
                                 required=(VM_ID, NIC_INDEX, Key("network", "UUID", "the new network", v.uuid_text)),
                                 optional=(NIC_IP,)),
    "nic-remove": task_verb("remove a NIC; its static address goes back to the pool", "DELETE",
                            "/vms/{vm-id}/nics/{index}/", required=(VM_ID, NIC_INDEX)),
}
HOST_ID = Key("host-id", "UUID", "the host's uuid", v.uuid_text)
HOST_DAY2 = {
    "unmanaged": Verb("list the host's domains that Facet did not define, and whether each can be adopted", "GET",
                      "/hosts/{host-id}/unmanaged/", required=(HOST_ID,),
                      present=lambda domains, out: UNMANAGED_TABLE(domains, out)),
    "adopt": task_verb("make an unmanaged domain a Facet VM", "POST", "/hosts/{host-id}/adopt/",
                       required=(HOST_ID, Key("domain", "UUID", "the domain's uuid", v.uuid_text, field="uuid")),
                       optional=(Key("name", "NAME", "the VM's name (default: the domain's)"),)),
}
IMAGE_DAY2 = {
    "import": task_verb(
        "import an image from an http(s) URL; a task downloads, checks and converts it", "POST", "/images/import/",
        required=(Key("url", "URL", "where the image is"),),
        optional=(Key("sha256", "HEX", "the file's SHA-256, checked"), Key("name", "NAME", "default: from the URL"),
                  Key("kind", "disk|iso", "default: iso for a .iso URL, else disk"),
                  Key("storage-container", "UUID", "where the image goes", v.uuid_text))),
}


VM_TABLE = o.table(
    ("NAME", o.field("name")), ("UUID", o.field("uuid")), ("POWER", o.field("power_state")),
    ("HOST", o.field("host.name")), ("VCPUS", o.field("vcpus")), ("MEMORY", o.size("memory_bytes")),
    ("IPS", lambda vm: ",".join(ip for nic in vm.get("nics") or [] for ip in nic.get("ips") or [])),
    ("TEMPLATE", o.flag("is_template")))
TASK_TABLE = o.table(
    ("UUID", o.field("uuid")), ("KIND", o.field("kind")), ("ENTITY", o.field("entity.name")),
    ("STATUS", o.field("status")), ("%", o.field("percent")), ("CREATED", o.when("created_at")),
    ("MESSAGE", lambda task: o.status_text(task, 60)))
TOKEN_TABLE = o.table(
    ("UUID", o.field("uuid")), ("NAME", o.field("name")), ("USER", o.field("user")), ("HINT", o.field("hint")),
    ("CREATED", o.when("created_at")), ("LAST-USED", o.when("last_used_at")), ("REVOKED", o.when("revoked_at")))

SNAPSHOT_ID = Key("snapshot-id", "UUID", "the snapshot's uuid (see snapshot list)", v.uuid_text)
SNAPSHOT_TABLE = o.table(
    ("NAME", lambda s: "  " * s.get("depth", 0) + s["name"] + (" *" if s.get("is_current") else "")),
    ("UUID", o.field("uuid")), ("STATE", o.field("state")), ("CONSISTENT", o.flag("consistent")),
    ("SIZE", o.size("size_bytes")), ("CREATED", o.when("created_at")), ("NOTE", o.field("consistency_note")))


def show_snapshot_tree(snapshots: list[dict], out) -> None:
    """The tree as the API lists it (each after its parent), indented by depth; `*` marks the current one."""
    SNAPSHOT_TABLE(snapshots, out)


NOUNS: dict[str, Noun] = {
    "vm": Noun("virtual machines", {
        "list": Verb("list VMs (50 a page unless page-size or --all)", "GET", "/vms/",
                     optional=VM_FILTERS + LIST_KEYS, present=VM_TABLE),
        "get": Verb("show one VM, by uuid or by exact name", "GET", "/vms/{vm-id}/", required=(VM_ID,),
                    present=o.show_vm, lookup=Lookup(Key("name", "NAME", "the VM's exact name, instead of vm-id"),
                                                     target="vm-id", path="/vms/", noun="VM")),
        "create": task_verb(
            "create a VM", "POST", "/vms/",
            required=(NEW_NAME, Key("vcpus", "N", "virtual CPUs (1 to 256)", v.integer(1, 256)),
                      Key("memory", "SIZE", "memory, e.g. 2G", v.size, field="memory_bytes")),
            optional=(Key("image", "NAME|UUID", "a disk image copied as the first disk, or an ISO inserted",
                          v.uuid_or_name, names="/images/", noun="image"),
                      HOST_UUID,
                      Key("disk", "SIZE[,SIZE]", "disks to make, e.g. 10G,20G", v.listed(v.size), field="disks"),
                      Key("network", "NAME|UUID[,...]", "a NIC on each network", v.listed(v.uuid_or_name),
                          field="nics", names="/networks/", noun="network"),
                      Key("ip", "auto|ADDR[,...]", "static IPs of the NICs, in order ('auto': next free pool "
                                                    "address); omit for DHCP", v.listed(v.ip_or_auto)),
                      POWER_ON, Key("guest-os", "OS", "linux (default) or windows"),
                      Key("hostname", "NAME", "the guest's hostname (default: from the name)"),
                      Key("description", "TEXT", "free text"),
                      Key("cluster", "UUID", "the cluster (default: the first one)", v.uuid_text),
                      Key("container", "UUID", "the storage container of the disks", v.uuid_text),
                      Key("is-template", "BOOL", "make a template rather than a VM", v.boolean)),
            shape=create_vm_body),
        "clone": task_verb("clone a VM or template", "POST", "/vms/{vm-id}/clone/", required=(VM_ID, NEW_NAME),
                           optional=(Key("linked", "BOOL", "linked clone: disks start as overlays of the source's",
                                         v.boolean), POWER_ON, HOST_UUID,
                                     Key("hostname", "NAME", "the clone's hostname (default: from its name)"),
                                     Key("snapshot", "UUID", "clone this snapshot of the VM (its disks as they "
                                                             "were)", v.uuid_text))),
        "bulk-clone": task_verb(
            "clone a VM or template many times, each clone with its own name, host, addresses and values "
            "(one parent task, a child per clone; --wait shows its progress)", "POST", "/vms/{vm-id}/bulk-clone/",
            required=BULK_CLONE_KEYS[0], optional=BULK_CLONE_KEYS[1], shape=bulk_clone_body),
        "bulk-clone-plan": Verb(
            "what vm bulk-clone would make (names, hosts, MACs, IPs, totals), checked; nothing is made",
            "POST", "/vms/{vm-id}/bulk-clone/?dry_run=1", required=BULK_CLONE_KEYS[0], optional=BULK_CLONE_KEYS[1],
            shape=bulk_clone_body, present=show_plan),
        "delete": task_verb("delete a VM and its disks", "DELETE", "/vms/{vm-id}/"),
        "make-template": task_verb("make a powered-off VM a template (its own identity, such as its Guest Tools "
                                   "certificate, is removed)", "POST", "/vms/{vm-id}/make-template/"),
        "make-vm": task_verb("make a template a VM again", "POST", "/vms/{vm-id}/make-vm/"),
        **{action: task_verb(help_text, "POST", "/vms/{vm-id}/power/", body={"action": action})
           for action, help_text in POWER_ACTIONS.items()},
        "bulk": task_verb(
            "apply an action to many VMs, chosen by uuid or by filter (one parent task, a child per VM)",
            "POST", "/vms/bulk/",
            required=(Key("action", "ACTION", f"{', '.join(POWER_ACTIONS)}, delete, ..."),),
            optional=(Key("vm-ids", "NAME|UUID[,...]", "these VMs", v.listed(v.uuid_or_name), field="uuids",
                          names="/vms/", noun="VM"), *VM_FILTERS,
                      Key("all", "BOOL", "every VM and template (instead of vm-ids or filter keys)", v.boolean),
                      Key("confirm-count", "N", "the number of VMs meant; needed to delete more than 5",
                          v.integer(0))),
            shape=bulk_body),
        "insert-iso": task_verb("insert an ISO image into a CD-ROM", "POST", "/vms/{vm-id}/insert-iso/",
                                required=(VM_ID, IMAGE_ISO), optional=(FREE_SLOT,)),
        "eject-iso": task_verb("eject the ISO of a CD-ROM", "POST", "/vms/{vm-id}/eject-iso/",
                               required=(VM_ID, SLOT)),
        **VM_DAY2,
    }),
    "snapshot": Noun("a VM's snapshots (disk-only; consistent when its Guest Tools agent froze the guest)", {
        "list": Verb("list a VM's snapshots as a tree (* marks the one its disks stand on)", "GET",
                     "/vms/{vm-id}/snapshots/", required=(VM_ID,), present=show_snapshot_tree),
        "create": task_verb("take a snapshot of a VM's disks", "POST", "/vms/{vm-id}/snapshots/",
                            required=(VM_ID, Key("name", "NAME", "the snapshot's name, unique for the VM")),
                            optional=(Key("description", "TEXT", "free text"),)),
        "revert": task_verb("revert a VM's disks to a snapshot (a running VM is powered off and on again)", "POST",
                            "/vms/{vm-id}/snapshots/{snapshot-id}/revert/", required=(VM_ID, SNAPSHOT_ID),
                            optional=(Key("confirm", "BOOL", "true: revert a running VM, losing its running "
                                                             "state", v.boolean),)),
        "delete": task_verb("delete a snapshot, merging its files with what stands on them", "DELETE",
                            "/vms/{vm-id}/snapshots/{snapshot-id}/", required=(VM_ID, SNAPSHOT_ID)),
    }),
    "task": Noun("tasks: the changes to the cluster and their progress", {
        "list": Verb("list tasks, newest first", "GET", "/tasks/", optional=(
            Key("status", "STATUS[,STATUS]", "queued, running, succeeded, failed, cancelled", v.listed(v.text)),
            Key("kind", "KIND", "e.g. vm.create, vm.power, vm.bulk"),
            Key("entity", "UUID", "tasks about this VM (or other object)", v.uuid_text),
            Key("parent", "UUID|none", "children of this bulk task, or 'none' for top-level tasks"),
            *LIST_KEYS), present=TASK_TABLE),
        "get": Verb("show a task; --wait follows it to its end", "GET", "/tasks/{task-id}/", required=(TASK_ID,),
                    present=o.show_task_detail, task=True),
        "cancel": Verb("stop a task cleanly: what has not started is cancelled, what runs finishes, what is made "
                       "is kept", "POST", "/tasks/{task-id}/cancel/", required=(TASK_ID,), present=o.show_task),
        "rerun": task_verb("run a failed task again (a bulk task: the children that did not succeed)", "POST",
                           "/tasks/{task-id}/rerun/", required=(TASK_ID,)),
    }),
    "token": Noun("your API tokens", {
        "create": Verb("make a named token and print it, once", "POST", "/tokens/",
                       required=(Key("name", "NAME", "a name to tell it apart (1 to 64 characters)"),),
                       present=o.show_token_created, note=token_note),
        "list": Verb("list your tokens", "GET", "/tokens/", optional=(
            Key("all", "BOOL", "everyone's tokens (Admin only)", one_or_zero), *LIST_KEYS), present=TOKEN_TABLE),
        "revoke": Verb("revoke a token: it stops working at once", "POST", "/tokens/{token-id}/revoke/",
                       required=(Key("token-id", "UUID", "the token's uuid (see token list)", v.uuid_text),)),
    }),
    "host": Noun("hypervisor hosts", {
        **inventory("/hosts/", "host-id", "host", o.table(
            ("NAME", o.field("name")), ("UUID", o.field("uuid")), ("STATE", o.field("state")),
            ("ADDRESS", o.field("address")), ("DRIVER", o.field("driver_uri")), ("CPUS", o.field("cpus")),
            ("MEMORY", o.size("memory_bytes")), ("ENABLED", o.flag("enabled")),
            ("WORKER-SEEN", o.when("worker_seen_at"))),
            filters=(Key("enabled", "BOOL", "true: enabled hosts only; false: disabled ones", v.boolean),)),
        "add": Verb("add a hypervisor host (its worker and Guest Tools Service instance run on it: "
                    "docs/production.md)", "POST", "/hosts/",
                    required=(Key("name", "NAME", "the host's name in Facet; its worker serves queue host.NAME"),
                              Key("uri", "URI", "sim://, qemu:///system, qemu+ssh://HOST/system or "
                                                "qemu+tls://HOST/system", field="driver_uri")),
                    optional=(Key("address", "IP", "the address its Guest Tools Service instance listens on"),
                              Key("cpus", "N", "CPUs VMs may use", v.integer(1)),
                              Key("memory", "SIZE", "memory VMs may use, e.g. 256G", v.size, field="memory_bytes"),
                              Key("cluster", "UUID", "the cluster (default: the first one)", v.uuid_text))),
        "remove": Verb("remove a host that has no VMs", "DELETE", "/hosts/{host-id}/",
                       required=(Key("host-id", "UUID", "the host's uuid", v.uuid_text),)),
        "enter-maintenance": task_verb("move every VM off a host and place none there until it leaves maintenance",
                                       "POST", "/hosts/{host-id}/enter-maintenance/",
                                       required=(Key("host-id", "UUID", "the host's uuid", v.uuid_text),)),
        "leave-maintenance": Verb("let a host take VMs again", "POST", "/hosts/{host-id}/leave-maintenance/",
                                  required=(Key("host-id", "UUID", "the host's uuid", v.uuid_text),)),
        **HOST_DAY2,
    }),
    "network": Noun("networks", inventory("/networks/", "network-id", "network", o.table(
        ("NAME", o.field("name")), ("UUID", o.field("uuid")), ("VLAN", o.field("vlan")), ("CIDR", o.field("cidr")),
        ("GATEWAY", o.field("gateway")),
        ("POOL", lambda n: f"{n['pool_start']}-{n['pool_end']}" if n.get("pool_start") else "")))),
    "image": Noun("disk images and ISOs", {**inventory("/images/", "image-id", "image", o.table(
        ("NAME", o.field("name")), ("UUID", o.field("uuid")), ("KIND", o.field("kind")),
        ("SIZE", o.size("size_bytes")), ("CREATED", o.when("created_at"))),
        filters=(Key("kind", "disk|iso", "disk images or ISOs only"),)), **IMAGE_DAY2}),
    "cluster": Noun("clusters", inventory("/clusters/", "cluster-id", "cluster", o.table(
        ("NAME", o.field("name")), ("UUID", o.field("uuid")), ("VIRTUAL-IP", o.field("virtual_ip")),
        ("CREATED", o.when("created_at"))))),
    "storage-container": Noun("storage containers (directories of disk files)", inventory(
        "/storage-containers/", "container-id", "storage container", o.table(
            ("NAME", o.field("name")), ("UUID", o.field("uuid")), ("PATH", o.field("path")),
            ("CAPACITY", o.size("capacity_bytes"))))),
}

# Commands without a noun.
SESSION: dict[str, Verb] = {
    "login": Verb("get an API token with a username and password and save it (the password is asked unless "
                  "given by password= or FACET_PASSWORD)",
                  required=(Key("username", "NAME", "your console username"),),
                  optional=(Key("url", "URL", "the console, e.g. http://127.0.0.1:8000 (default: FACET_URL)"),
                            Key("password", "PASSWORD", "not recommended: it stays in your shell history"),
                            Key("name", "NAME", "the token's name (default: cli@HOSTNAME)")),
                  run=login),
    "logout": Verb("revoke the token saved by login and remove the file", run=logout),
}
