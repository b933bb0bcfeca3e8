from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate


class NgtConfig(AppConfig):
    name = "ngt"
    verbose_name = "Guest Tools"

    def ready(self) -> None:
        from console.core.registry import (
            BulkAction,
            Column,
            Filter,
            HostHooks,
            NavItem,
            Panel,
            PowerAction,
            VMHooks,
            VMOption,
            registry,
        )
        from ngt.filtersets import GUEST_TOOLS_CHOICES, filter_guest_tools

        # services and restore declare the task kinds, for the web tier and workers alike
        from ngt.services import demo, guest_tools, identity, quiesce, restore

        from .api.serializers import GuestToolsOptionSerializer
        from .forms import GuestToolsFields

        registry.bulk_actions.add("guest-tools-mount", BulkAction(
            "Mount Guest Tools", "ngt.mount",
            lambda actor, vm, parent, config_only=False: guest_tools.request_mount(actor, vm, config_only, parent),
            order=60, params={"config_only": bool}))
        for action in guest_tools.GUEST_POWER:
            label, tooltip = guest_tools.GUEST_POWER_LABELS[action]
            registry.power_actions.add(action, PowerAction(
                label, lambda actor, vm, action=action: guest_tools.request_guest_power(actor, vm, action),
                offered=guest_tools.agent_linked, tooltip=tooltip))
        registry.vm_options.add("guest_tools", VMOption(
            api_field=lambda: GuestToolsOptionSerializer(required=False, allow_null=True),
            from_api=identity.from_api, form=GuestToolsFields, from_form=identity.form_request,
            template="ngt/form_section.html", label="Guest Tools", order=20))
        registry.vm_hooks.add("guest_tools", VMHooks(  # the name of the option its `check` receives
            check=identity.check_new_vms, created=identity.record, defined=identity.mount_new_identity,
            deleting=_forget, made_template=guest_tools.leave_identity, quiesce=quiesce.quiesce,
            snapshot_in_use=restore.snapshot_in_use))
        registry.host_hooks.add(self.name, HostHooks(state_changed=guest_tools.host_state_changed))
        registry.vm_panels.add("guest-tools", Panel("Guest Tools", "guest-tools-panel", order=10,
                                                    pending=guest_tools.link_pending))
        registry.vm_columns.add("guest-tools", Column("Guest Tools", "ngt/list_cell.html", ("guest_tools",), order=10))
        registry.vm_filters.add("guest_tools", Filter("Guest Tools", GUEST_TOOLS_CHOICES, filter_guest_tools))
        registry.navigation.add("guest-tools", NavItem("Guest Tools", "guest-tools", "tool", order=60))
        registry.demo_seeders.add("guest-tools", demo.mount_guest_tools)
        registry.urls.add(self.name, "ngt.urls")
        registry.api_urls.add(self.name, "ngt.api.urls")
        post_migrate.connect(_make_key_file, sender=self)


def _forget(vm) -> None:
    """Before a VM goes: its tools ISO (which holds a private key) and its restore disks' overlays."""
    from ngt.services import guest_tools, restore

    guest_tools.forget_tools_iso(vm)
    restore.forget_restore_disks(vm)


def _make_key_file(apps=global_apps, **kwargs) -> None:
    """After `migrate` (or `flush`, which sends no `apps`), unless it left this app's tables out (`migrate ngt
    zero`, or another app alone)."""
    from ngt.services.authority import ensure_key_file

    try:
        apps.get_model("ngt", "CertificateAuthority")
    except LookupError:
        return
    ensure_key_file()
