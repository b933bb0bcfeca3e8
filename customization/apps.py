from django.apps import AppConfig


class CustomizationConfig(AppConfig):
    name = "customization"
    verbose_name = "OS customization"
