"""The one way an app plugs into the console.

Each app fills these stores in its `AppConfig.ready()`; the kernel and the inventory read them and never
name another app. A key registered twice is an error at start-up, so two apps can't silently replace each
other's task kind, bulk action or page part. Stores keep the order of registration (Django's INSTALLED_APPS
order); the ones drawn on pages sort by their `order`.

The entries' types are declared here, beside their stores, so that this file is the whole plug-in contract.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


class DuplicateRegistration(Exception):
    pass


class Store:
    """Named entries of one kind; adding a name twice raises `DuplicateRegistration`."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, Any] = {}

    def add(self, name: str, entry: Any) -> Any:
        if name in self._entries:
            raise DuplicateRegistration(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> Any:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, default: Any = None) -> Any:
        return self._entries.get(name, default)

    def items(self):
        return self._entries.items()

    def values(self):
        return self._entries.values()

    def ordered(self) -> list[Any]:
        """The entries sorted by their `order` (then by registration)."""
        return sorted(self._entries.values(), key=lambda entry: entry.order)


# --- Tasks -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskKind:
    """The work of a kind of task (`run(task, progress)`, rerunnable) and, where a failure must undo
    written intent, its undo (`undo(task)`). Declared with `console.core.tasks.task_kind`.

    `discard(task)` makes a task of this kind cancellable while it waits: it drops what the request wrote for
    a task that never started (rows only: no hypervisor call, as it runs in the web tier). A kind without it
    runs to its end even when its bulk is cancelled.

    `run_batch(work)` does the work of several tasks of the kind at once (a bulk clone's batch of ten, set-wise:
    a query per table for the batch instead of per task): `work` is a list of (task, progress), and it answers
    each task's message, in order. It must leave every task as `run` would (a task may run again from the
    top): a worker runs a batch's tasks through it together, and when it raises, each task alone through `run`."""

    run: Callable[..., str | None]
    undo: Callable[..., None] | None = None
    discard: Callable[..., None] | None = None
    run_batch: Callable[..., list[str]] | None = None


@dataclass(frozen=True)
class BulkAction:
    """An action of `POST /api/v1/vms/bulk/` and of the VM list's bulk menu. `request(actor, vm, parent,
    **params)` creates the child task for one VM, or raises a ServiceError to refuse that VM; `params` names
    the request's parameters the action takes, with their type (`{"config_only": bool}`)."""

    label: str
    child_kind: str
    request: Callable[..., Any]
    destructive: bool = False
    order: int = 50
    params: dict[str, type] = field(default_factory=dict)


@dataclass(frozen=True)
class PowerAction:
    """A power action that another app carries out (the guest's own shutdown through its agent):
    `request(actor, vm)` creates its task; `offered(vm)` says whether the VM page offers it now."""

    label: str
    request: Callable[..., Any]
    offered: Callable[..., bool]
    tooltip: str = ""  # what the action does, shown on hover beside the label


# --- VMs: what apps add to their creation and life -------------------------------------------------------
@dataclass(frozen=True)
class NewVM:
    """What the hooks know of a VM about to be created or cloned, before anything is written."""

    cluster: Any
    name: str
    hostname: str
    guest_os: str
    is_template: bool = False
    source: Any = None  # the VM or template a clone is made from


@dataclass
class Consistency:
    """What a snapshot records of its guest's state: `consistent` when the guest's filesystems were frozen (or
    the VM was off) while its disks were snapshotted, and the `note` that says how, or why not."""

    consistent: bool
    note: str


@dataclass(frozen=True)
class VMHooks:
    """What an app does along a VM's life; every hook is optional.

    - `check(new_vms, options)`: before anything is written, validate the app's part of the request of each
      new VM (the value of the `VMOption` registered under the same name as these hooks, or None) and return,
      in order, what `created` records. Raises ServiceError to refuse. Lists: a create's one VM, or every
      clone of a bulk clone (so that what they share is checked once).
    - `created(made)`: inside the create or clone transaction, a list of (vm, what `check` returned).
    - `defined(vms)`: in the worker, once the VMs' disks are made and before the hypervisor defines them: media
      the app puts in CD-ROM rows (adding drives) are in the domain from its start, and inserted. A list: a
      create task's one VM, or a batch of clones (each VM with its host, cluster, disks and NICs read already).
    - `powered(changes)`: after power states changed, a list of (vm, new state).
    - `deleting(vm)`: before the VM's domain and rows go (a delete, or an undone create).
    - `removing_nic(vm, remaining)`: before a NIC is removed, leaving `remaining` NICs; raises ServiceError
      to refuse (a customization that still reports over the network needs one).
    - `made_template(vm)`: in the worker, once a powered-off VM is a template: remove what belongs to that VM
      alone and must not reach its clones. May return a note for the task's message.
    - `guest_reported(reports)`: the guests' own result of their first-boot customization, relayed by an app
      that talks to guests: a list of `GuestReport`.
    - `quiesce(vm, consistency)`: a context manager around the moment a running VM's disks are snapshotted (in
      the worker): it freezes the guest where it can, thaws it on leaving, and sets the `Consistency` it gets.
    - `snapshot_in_use(snapshot)`: why the snapshot may not be deleted or merged now ("" when it may).
    """

    check: Callable[..., Any] | None = None
    created: Callable[..., None] | None = None
    defined: Callable[..., None] | None = None
    powered: Callable[..., None] | None = None
    deleting: Callable[..., None] | None = None
    removing_nic: Callable[..., None] | None = None
    made_template: Callable[..., str | None] | None = None
    guest_reported: Callable[..., None] | None = None
    quiesce: Callable[..., Any] | None = None
    snapshot_in_use: Callable[..., str] | None = None


@dataclass(frozen=True)
class HostHooks:
    """What an app does when a host changes; every hook is optional.

    - `state_changed(host, old, new)`: after a host's state (`ready`, `maintenance`, `unreachable`) changed.
    - `vm_moved(vm, from_host)`: once a VM is defined on another host (moved off a host in maintenance, or
      restarted after its host failed); `vm.host` is the new one.
    """

    state_changed: Callable[..., None] | None = None
    vm_moved: Callable[..., None] | None = None


@dataclass(frozen=True)
class GuestReport:
    """What a guest says of its first-boot customization (cloud-init's result): `status` is running,
    succeeded or failed; `message` its own error lines."""

    vm_id: int
    status: str
    message: str = ""


@dataclass(frozen=True)
class VMOption:
    """A part of the create and clone requests that an app owns (a customization script): the API field
    (`api_field()` makes a new serializer field, `from_api(value)` reads it), the fields `form` mixes into
    the create and clone forms with the `template` that draws them, and `from_form(form)`. Both give the
    value the app's `VMHooks.check` receives."""

    api_field: Callable[[], Any]
    from_api: Callable[[Any], Any]
    form: type
    from_form: Callable[[Any], Any]
    template: str
    # A bulk clone's per-clone table gives each clone its own key-values (the columns past name, hostname
    # and ip). `unknown_keys(value, keys, new_vm)` names those of `keys` this option's value cannot take;
    # `per_clone(value, key_values)` is the value for one clone. An option without them takes no keys.
    unknown_keys: Callable[..., list[str]] | None = None
    per_clone: Callable[[Any, dict[str, str]], Any] | None = None
    # The bulk clone wizard gives each option a step of its own, named `label`, in `order`.
    label: str = ""
    order: int = 50


@dataclass(frozen=True)
class Panel:
    """A card on the VM page that loads itself from `url_name` (called with the VM's uuid). While
    `pending(vm)` is true (the app waits for something the VM does: an agent to link, a script to run)
    the page polls itself and its panels every few seconds instead of every half minute."""

    title: str
    url_name: str
    order: int = 50
    pending: Callable[..., bool] | None = None


@dataclass(frozen=True)
class Column:
    """A column of the VM list: `template` draws one cell (`vm` in its context); `related` are the
    one-to-one relations the cell reads, joined once for the whole page."""

    label: str
    template: str
    related: tuple[str, ...] = ()
    order: int = 50


@dataclass(frozen=True)
class Filter:
    """A filter of the VM list and of `GET /api/v1/vms/`: its `choices` (value, label), and
    `apply(queryset, value)` returning the queryset narrowed to one value."""

    label: str
    choices: list[tuple[str, str]]
    apply: Callable[[Any, str], Any]
    order: int = 50


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    icon: str
    order: int = 50


@dataclass
class Registry:
    task_kinds: Store = field(default_factory=lambda: Store("task kind"))
    # task kind -> what people read ("Clone VM"), or a function of the task giving it ("Bulk Power Off"); the
    # API and CLI keep the kind ("vm.clone")
    task_labels: Store = field(default_factory=lambda: Store("task label"))
    bulk_actions: Store = field(default_factory=lambda: Store("bulk action"))
    power_actions: Store = field(default_factory=lambda: Store("power action"))
    vm_hooks: Store = field(default_factory=lambda: Store("VM hooks of app"))
    host_hooks: Store = field(default_factory=lambda: Store("host hooks of app"))
    vm_options: Store = field(default_factory=lambda: Store("VM option"))
    vm_panels: Store = field(default_factory=lambda: Store("VM panel"))
    vm_columns: Store = field(default_factory=lambda: Store("VM list column"))
    vm_filters: Store = field(default_factory=lambda: Store("VM list filter"))
    navigation: Store = field(default_factory=lambda: Store("navigation entry"))
    demo_seeders: Store = field(default_factory=lambda: Store("demo seeder"))
    # app -> the module of its pages' urls, and of its API's (the inventory's own are the console's urls)
    urls: Store = field(default_factory=lambda: Store("URL module"))
    api_urls: Store = field(default_factory=lambda: Store("API URL module"))

    def hooks(self, name: str) -> list[Callable]:
        """The `name` hook of every app that has one, in registration order."""
        return [hook for hooks in self.vm_hooks.values() if (hook := getattr(hooks, name)) is not None]

    def host_hooks_named(self, name: str) -> list[Callable]:
        """The `name` host hook of every app that has one, in registration order."""
        return [hook for hooks in self.host_hooks.values() if (hook := getattr(hooks, name)) is not None]


registry = Registry()
