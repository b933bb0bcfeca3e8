from .actors import Actor
from .models import AuditEvent


def record(actor: Actor, action: str, entity=None, entity_type: str = "", **detail) -> AuditEvent:
    """Write one audit event. `entity` is any model with `uuid` and `name`."""
    return AuditEvent.objects.create(
        user=actor.user,
        username=actor.user.get_username() if actor.user else "system",
        action=action,
        entity_type=entity_type or (type(entity).__name__.lower() if entity is not None else ""),
        entity_uuid=getattr(entity, "uuid", None),
        entity_name=str(getattr(entity, "name", "") or "")[:80],
        source_address=actor.source_address,
        detail=detail,
    )
