from .actors import Actor
from .models import AuditEvent


def record(actor: Actor, action: str, entity=None, entity_type: str = "", **detail) -> AuditEvent:
    """Write one audit event. `entity` is any model with `uuid` and `name`."""
    return AuditEvent.objects.create(**_event(actor, action, entity, entity_type, detail))


def record_each(actor: Actor, action: str, entries: list[tuple[object, dict]]) -> list[AuditEvent]:
    """One audit event per (entity, detail), written in one statement (a bulk clone's thousand VMs)."""
    return AuditEvent.objects.bulk_create(
        [AuditEvent(**_event(actor, action, entity, "", detail)) for entity, detail in entries], batch_size=500)


def _event(actor: Actor, action: str, entity, entity_type: str, detail: dict) -> dict:
    return dict(
        user=actor.user,
        username=actor.user.get_username() if actor.user else "system",
        action=action,
        entity_type=entity_type or (type(entity).__name__.lower() if entity is not None else ""),
        entity_uuid=getattr(entity, "uuid", None),
        entity_name=str(getattr(entity, "name", "") or "")[:80],
        source_address=actor.source_address,
        detail=detail,
    )
