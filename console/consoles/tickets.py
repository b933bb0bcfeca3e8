"""Console tickets and sessions. A ticket is signed (Django's signer, with the secret key), names one session
row, and is good for FACET_CONSOLE_TICKET_SECONDS (at most 30) and one websocket: redeeming it marks the
session opened in one conditional UPDATE, so a second use (or a race of two) finds it taken. Only users who may
operate the VM (Operator, Admin) get one; the session row and two audit events say who watched which VM, from
where, when and for how long."""

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone

from console.core import audit
from console.core.access import OPERATOR, has_role
from console.core.actors import Actor
from console.core.errors import Conflict, InvalidRequest, ServiceError

from ..models import VM, ConsoleSession

SALT = "facet.console.ticket"


class Refused(ServiceError):
    """A websocket that may not open; the message is its close reason."""

    status_code = 403


def issue_ticket(actor: Actor, vm: VM, kind: str) -> tuple[ConsoleSession, str]:
    if kind not in ConsoleSession.Kind.values:
        raise InvalidRequest({"kind": [f"choose one of {', '.join(ConsoleSession.Kind.values)}"]})
    if not has_role(actor.user, OPERATOR):
        raise Refused("consoles are for users who may operate the VM (Operator or Admin)")
    if vm.is_template or vm.host_id is None:
        raise Conflict({"vm": [f"{vm.name} is a template or not placed on a host: it has no console"]})
    if vm.power_state != VM.PowerState.ON:
        raise Conflict({"vm": [f"{vm.name} is {vm.power_state}: power it on to open its console"]})
    session = ConsoleSession.objects.create(vm=vm, vm_name=vm.name, user=actor.user,
                                            username=actor.user.get_username(), kind=kind,
                                            source_address=actor.source_address)
    return session, signing.dumps(str(session.uuid), salt=SALT, compress=False)


def redeem_ticket(ticket: str, vm_uuid, kind: str) -> ConsoleSession:
    """The session a fresh, unused ticket for this VM and console names, now marked opened; Refused else."""
    try:
        session_uuid = signing.loads(ticket, salt=SALT, max_age=settings.FACET_CONSOLE_TICKET_SECONDS)
    except signing.SignatureExpired:
        raise Refused("the console ticket has expired: open the console again") from None
    except signing.BadSignature:
        raise Refused("not a console ticket") from None
    with transaction.atomic():
        taken = ConsoleSession.objects.filter(uuid=session_uuid, opened_at__isnull=True).update(
            opened_at=timezone.now())
        session = ConsoleSession.objects.select_related("vm__host", "user").filter(uuid=session_uuid).first()
        if session is None or not taken:
            raise Refused("this console ticket was used already: open the console again")
        if session.vm is None or str(session.vm.uuid) != str(vm_uuid) or session.kind != kind:
            _close(session, "ticket for another console")
            raise Refused("this ticket is for another console")
        if session.user is None or not session.user.is_active or not has_role(session.user, OPERATOR):
            _close(session, "user may no longer operate the VM")
            raise Refused("consoles are for users who may operate the VM (Operator or Admin)")
        audit.record(Actor(session.user, session.source_address), "vm.console.open", session.vm,
                     entity_type="vm", kind=kind, session=str(session.uuid))
    return session


def close_session(session: ConsoleSession, reason: str) -> None:
    with transaction.atomic():
        _close(session, reason)
        audit.record(Actor(session.user, session.source_address), "vm.console.close", session.vm,
                     entity_type="vm", kind=session.kind, session=str(session.uuid),
                     seconds=round(session.seconds or 0), reason=reason)


def _close(session: ConsoleSession, reason: str) -> None:
    session.closed_at = timezone.now()
    session.close_reason = reason[:120]
    session.save(update_fields=["closed_at", "close_reason"])
