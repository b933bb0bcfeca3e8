from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate


class NgtConfig(AppConfig):
    name = "ngt"
    verbose_name = "Guest Tools"

    def ready(self) -> None:
        from console.services.bulk import BULK_ACTIONS, BulkAction
        from console.services.demo import DEMO_EXTRAS
        from console.services.power import GUEST_POWER_ACTIONS

        from . import demo, services  # services registers the task kinds, for the web tier and workers alike

        BULK_ACTIONS["guest-tools-mount"] = BulkAction(
            "ngt.mount", lambda actor, vm, parent: services.request_mount(actor, vm, parent=parent))
        for action in services.GUEST_POWER:
            GUEST_POWER_ACTIONS[action] = lambda actor, vm, action=action: services.request_guest_power(
                actor, vm, action)
        DEMO_EXTRAS.append(demo.mount_guest_tools)
        post_migrate.connect(_make_key_file, sender=self)


def _make_key_file(apps=global_apps, **kwargs) -> None:
    """After `migrate` (or `flush`, which sends no `apps`), unless it left this app's tables out (`migrate ngt
    zero`, or another app alone)."""
    from .authority import ensure_key_file

    try:
        apps.get_model("ngt", "CertificateAuthority")
    except LookupError:
        return
    ensure_key_file()
