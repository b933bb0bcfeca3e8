from django.apps import AppConfig


class NgtConfig(AppConfig):
    name = "ngt"
    verbose_name = "Guest Tools"

    def ready(self) -> None:
        from console.services.bulk import BULK_ACTIONS, BulkAction

        from . import services  # registers the task kinds, for the web tier and the workers alike

        BULK_ACTIONS["guest-tools-mount"] = BulkAction(
            "ngt.mount", lambda actor, vm, parent: services.request_mount(actor, vm, parent=parent))
