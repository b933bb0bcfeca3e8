"""The registry: what the apps plugged in at start-up, and a second registration refused."""

import pytest

from console.core.registry import DuplicateRegistration, NavItem, Store, registry
from console.core.tasks import task_kind


def test_a_task_kind_declared_twice_is_an_error():
    with pytest.raises(DuplicateRegistration, match="task kind 'vm.clone' is registered twice"):
        task_kind("vm.clone")(lambda task, progress: None)


def test_a_duplicate_entry_is_refused_and_the_first_kept():
    store = Store("navigation entry")
    first = store.add("vms", NavItem("VMs", "vm-list", "server"))
    with pytest.raises(DuplicateRegistration):
        store.add("vms", NavItem("Other", "other", "x"))
    assert store["vms"] is first


def test_every_app_plugged_in_through_its_ready():
    assert {"vm.create", "vm.clone", "ngt.mount", "vm.customization.remove", "volume-group.attach"} <= set(
        registry.task_kinds)
    assert {"power-on", "delete", "guest-tools-mount"} <= set(registry.bulk_actions)
    # Hooks are named as the option their `check` receives (console's own: pending edits at power-off).
    assert set(registry.vm_options) == {"guest_tools", "customization"}
    assert set(registry.vm_hooks) == {"console", "guest_tools", "customization"}
    assert [item.label for item in registry.navigation.ordered()][:3] == ["Dashboard", "VMs", "Templates"]
