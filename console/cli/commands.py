"""The table of nouns and verbs: each verb is one call of the REST API under /api/v1/ (method, path,
required keys, optional keys) and how its answer is shown. Adding a command is adding a line here."""

from itertools import zip_longest

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
VM_ID = Key("vm-id", "UUID", "the VM's uuid", v.uuid_text)
VM_FILTERS = (
    SEARCH,
    Key("power-state", "STATE[,STATE]", "on, off, paused, creating, deleting, unknown", v.listed(v.text)),
    Key("host", "NAME|UUID", "VMs placed on this host"),
    Key("is-template", "BOOL", "true: templates only; false: VMs only", v.boolean),
)
NEW_NAME = Key("name", "NAME", "the new VM's name")
HOST_UUID = Key("host", "UUID", "the host to place it on; omit for automatic placement", v.uuid_text)
POWER_ON = Key("power-on", "BOOL", "power it on once made", v.boolean)
TASK_ID = Key("task-id", "UUID", "the task's uuid", v.uuid_text)
IMAGE_ISO = Key("image", "UUID", "the ISO image to insert", v.uuid_text)
SLOT = Key("slot", "N", "the CD-ROM slot (0 to 3)", v.integer(0, 3))
FREE_SLOT = Key("slot", "N", "the CD-ROM slot (0 to 3); default: an empty one", v.integer(0, 3))


def create_vm_body(fields: dict) -> dict:
    """`disk=10G,20G` -> `disks`, `network=A,B ip=auto` -> `nics` (IPs pair with networks in order)."""
    body = dict(fields)
    if "disks" in body:
        body["disks"] = [{"size_bytes": n} for n in body["disks"]]
    networks, ips = body.pop("nics", []), body.pop("ip", [])
    if len(ips) > len(networks):
        raise UsageError(f"ip: {len(ips)} address(es) for {len(networks)} network(s); "
                         "give network=UUID[,UUID] with one network per address")
    if networks:
        body["nics"] = [{"network": net, **({"ip": ip} if ip else {})} for net, ip in zip_longest(networks, ips)]
    return body


def bulk_body(fields: dict) -> dict:
    """`vm-ids=` becomes `uuids`; the filter keys become `filter`, as the list takes them."""
    body = dict(fields)
    action, uuids = body.pop("action"), body.pop("uuids", None)
    filter_names = ", ".join(k.name for k in VM_FILTERS)
    if uuids is not None and body:
        raise UsageError(f"vm-ids: give either vm-ids or filter keys ({filter_names}), not both")
    if uuids is None and not body:
        raise UsageError(f"say which VMs: vm-ids=UUID[,UUID] or filter keys ({filter_names})")
    return {"action": action, "uuids": uuids} if uuids is not None else {"action": action, "filter": body}


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
            optional=(Key("image", "UUID", "a disk image copied as the first disk, or an ISO inserted", v.uuid_text),
                      HOST_UUID,
                      Key("disk", "SIZE[,SIZE]", "disks to make, e.g. 10G,20G", v.listed(v.size), field="disks"),
                      Key("network", "UUID[,UUID]", "a NIC on each network", v.listed(v.uuid_text), field="nics"),
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
        "delete": task_verb("delete a VM and its disks", "DELETE", "/vms/{vm-id}/"),
        **{action: task_verb(help_text, "POST", "/vms/{vm-id}/power/", body={"action": action})
           for action, help_text in POWER_ACTIONS.items()},
        "bulk": task_verb(
            "apply an action to many VMs, chosen by uuid or by filter (one parent task, a child per VM)",
            "POST", "/vms/bulk/",
            required=(Key("action", "ACTION", f"{', '.join(POWER_ACTIONS)}, delete, ..."),),
            optional=(Key("vm-ids", "UUID[,UUID]", "these VMs", v.listed(v.uuid_text), field="uuids"), *VM_FILTERS),
            shape=bulk_body),
        "insert-iso": task_verb("insert an ISO image into a CD-ROM", "POST", "/vms/{vm-id}/insert-iso/",
                                required=(VM_ID, IMAGE_ISO), optional=(FREE_SLOT,)),
        "eject-iso": task_verb("eject the ISO of a CD-ROM", "POST", "/vms/{vm-id}/eject-iso/",
                               required=(VM_ID, SLOT)),
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
    "host": Noun("hypervisor hosts", inventory("/hosts/", "host-id", "host", o.table(
        ("NAME", o.field("name")), ("UUID", o.field("uuid")), ("ADDRESS", o.field("address")),
        ("DRIVER", o.field("driver_uri")), ("CPUS", o.field("cpus")), ("MEMORY", o.size("memory_bytes")),
        ("ENABLED", o.flag("enabled"))),
        filters=(Key("enabled", "BOOL", "true: enabled hosts only; false: disabled ones", v.boolean),))),
    "network": Noun("networks", inventory("/networks/", "network-id", "network", o.table(
        ("NAME", o.field("name")), ("UUID", o.field("uuid")), ("VLAN", o.field("vlan")), ("CIDR", o.field("cidr")),
        ("GATEWAY", o.field("gateway")),
        ("POOL", lambda n: f"{n['pool_start']}-{n['pool_end']}" if n.get("pool_start") else "")))),
    "image": Noun("disk images and ISOs", inventory("/images/", "image-id", "image", o.table(
        ("NAME", o.field("name")), ("UUID", o.field("uuid")), ("KIND", o.field("kind")),
        ("SIZE", o.size("size_bytes")), ("CREATED", o.when("created_at"))),
        filters=(Key("kind", "disk|iso", "disk images or ISOs only"),))),
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
