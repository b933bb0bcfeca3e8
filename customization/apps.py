from django.apps import AppConfig


class CustomizationConfig(AppConfig):
    name = "customization"
    verbose_name = "OS customization"

    def ready(self) -> None:
        from console.core.registry import Column, NavItem, Panel, VMHooks, VMOption, registry

        from .api.serializers import CustomizationSpecSerializer, customization_request
        from .forms import CustomizationFields
        from .services import lifecycle

        registry.vm_options.add(self.name, VMOption(
            api_field=lambda: CustomizationSpecSerializer(required=False, allow_null=True),
            from_api=customization_request, form=CustomizationFields,
            from_form=lambda form: form.customization_request(), template="customization/form_section.html",
            unknown_keys=lifecycle.unknown_keys, per_clone=lifecycle.per_clone, label="Customization", order=10))
        registry.vm_hooks.add(self.name, VMHooks(
            check=lifecycle.check_new_vms, created=lifecycle.record, defined=lifecycle.attach_media,
            powered=lifecycle.power_changed, deleting=lifecycle.discard,
            removing_nic=lifecycle.check_nic_removal, guest_reported=lifecycle.guest_reported))
        registry.vm_panels.add("customization", Panel("Customization", "customization-panel", order=20,
                                                      pending=lifecycle.waiting_for_guest))
        registry.vm_columns.add("customization", Column("Customization", "customization/list_cell.html",
                                                        ("customization",), order=20))
        registry.navigation.add("customization-scripts", NavItem(
            "Customization Scripts", "customization-scripts", "file", order=70))
        registry.urls.add(self.name, "customization.urls")
        registry.api_urls.add(self.name, "customization.api.urls")
