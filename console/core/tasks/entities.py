"""A task's entity (the VM, image or host it changes), as pages link to it: gone since, or where its page is."""

import functools

from django.apps import apps

from ..models import Task


@functools.cache
def _entity_models() -> dict[str, type]:
    """Task.entity_type (a model's class name, lower case) -> the model, for models with a uuid."""
    return {model.__name__.lower(): model for model in apps.get_models()
            if any(field.name == "uuid" for field in model._meta.fields)}


def entity_gone(task: Task) -> bool:
    """Whether the task's entity was deleted since (a create rolled back, a delete done)."""
    model = _entity_models().get(task.entity_type)
    return bool(task.entity_uuid and model and not model.objects.filter(uuid=task.entity_uuid).exists())


def link_entities(tasks) -> list[Task]:
    """Give each task `entity_url`, its entity's page, or "" when it has none or the entity is gone, so that
    no link leads to a page that no longer exists. One query per entity type."""
    tasks = list(tasks)
    wanted: dict[str, set] = {}
    for task in tasks:
        if task.entity_uuid:
            wanted.setdefault(task.entity_type, set()).add(task.entity_uuid)
    urls = {}
    for entity_type, uuids in wanted.items():
        model = _entity_models().get(entity_type)
        if model is not None and hasattr(model, "get_absolute_url"):
            urls.update((entity.uuid, entity.get_absolute_url()) for entity in model.objects.filter(uuid__in=uuids))
    for task in tasks:
        task.entity_url = urls.get(task.entity_uuid, "")
    return tasks
