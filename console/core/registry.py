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
    written intent, its undo (`undo(task)`). Declared with `console.core.tasks.task_kind`."""

    run: Callable[..., str | None]
    undo: Callable[..., None] | None = None


@dataclass(frozen=True)
class BulkAction:
    """An action of `POST /api/v1/vms/bulk/` and of the VM list's bulk menu. `request(actor, vm, parent)`
    creates the child task for one VM, or raises a ServiceError to refuse that VM."""

    label: str
    child_kind: str
    request: Callable[..., Any]
    destructive: bool = False
    order: int = 50


@dataclass(frozen=True)
class PowerAction:
    """A power action that another app carries out (the guest's own shutdown through its agent):
    `request(actor, vm)` creates its task; `offered(vm)` says whether the VM page offers it now."""

    label: str
    request: Callable[..., Any]
    offered: Callable[..., bool]


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

    - `check(new_vm, option)`: before anything is written, validate the app's part of the request (its
      `VMOption` value, or None) and return what `created` records. Raises ServiceError to refuse.
    - `created(vm, checked)`: inside the create or clone transaction, with what `check` returned.
    - `defined(vm)`: in the worker, once the hypervisor knows the VM and before its CD-ROMs are inserted.
    - `powered(changes)`: after power states changed, a list of (vm, new state).
    - `deleting(vm)`: before the VM's domain and rows go (a delete, or an undone create).
    - `quiesce(vm, consistency)`: a context manager around the moment a running VM's disks are snapshotted (in
      the worker): it freezes the guest where it can, thaws it on leaving, and sets the `Consistency` it gets.
    - `snapshot_in_use(snapshot)`: why the snapshot may not be deleted or merged now ("" when it may).
    """

    check: Callable[..., Any] | None = None
    created: Callable[..., None] | None = None
    defined: Callable[..., None] | None = None
    powered: Callable[..., None] | None = None
    deleting: Callable[..., None] | None = None
    quiesce: Callable[..., Any] | None = None
    snapshot_in_use: Callable[..., str] | None = None


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


@dataclass(frozen=True)
class Panel:
    """A card on the VM page that loads itself from `url_name` (called with the VM's uuid)."""

    title: str
    url_name: str
    order: int = 50


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
    bulk_actions: Store = field(default_factory=lambda: Store("bulk action"))
    power_actions: Store = field(default_factory=lambda: Store("power action"))
    vm_hooks: Store = field(default_factory=lambda: Store("VM hooks of app"))
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


registry = Registry()
