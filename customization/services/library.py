"""The library of saved scripts: validated when saved, content kept as text."""

from django.db import IntegrityError, transaction

from console.core import audit
from console.core.actors import Actor
from console.core.errors import Conflict, InvalidRequest, check_field
from console.models.inventory import name_validator

from ..models import CustomizationScript, Kind
from .validation import decoded, validate


def problems_as_messages(kind: str, content: str | bytes) -> tuple[str, list[str]]:
    """(format, ["line L, column C: message", ...]) of the errors of a script."""
    result = validate(kind, content)
    return result.format, [f"line {p.line}, column {p.column}: {p.message}" for p in result.errors]


def save_script(actor: Actor, *, name: str, kind: str, content: str | bytes, description: str = "",
                script: CustomizationScript | None = None) -> CustomizationScript:
    """Create a script, or change one; a script with errors is refused, warnings are fine."""
    check_field(name_validator, name, "name")
    if kind not in Kind.values:
        raise InvalidRequest({"kind": [f"choose one of {', '.join(Kind.values)}"]})
    if len(description) > 255:
        raise InvalidRequest({"description": ["at most 255 characters"]})
    script_format, errors = problems_as_messages(kind, content)
    if errors:
        raise InvalidRequest({"content": errors})
    script = script or CustomizationScript(owner=actor.user)
    script.name, script.kind, script.description = name, kind, description
    script.content, script.format = decoded(content) or "", script_format
    verb = "update" if script.pk else "create"
    try:
        with transaction.atomic():
            # Only the fields edited here: usage_count is counted concurrently by VM requests.
            script.save(update_fields=["name", "kind", "description", "content", "format", "updated_at"]
                        if script.pk else None)
            audit.record(actor, f"customization_script.{verb}", script, entity_type="customization_script")
    except IntegrityError:
        raise Conflict({"name": [f"a script named {name!r} exists already"]}) from None
    return script


def delete_script(actor: Actor, script: CustomizationScript) -> None:
    """VMs keep their own copy, so a script in use can go."""
    with transaction.atomic():
        audit.record(actor, "customization_script.delete", script, entity_type="customization_script")
        script.delete()
