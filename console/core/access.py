"""Roles (Django groups) and API tokens."""

from datetime import timedelta

from django.contrib.auth.models import Group, User
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import audit
from .actors import Actor
from .errors import Conflict, InvalidRequest
from .models import ApiToken

ADMIN, OPERATOR, VIEWER = "Admin", "Operator", "Viewer"
ROLES = (ADMIN, OPERATOR, VIEWER)  # strongest first
RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}
LAST_USED_PRECISION = timedelta(minutes=1)


def ensure_roles() -> None:
    for role in ROLES:
        Group.objects.get_or_create(name=role)


def role_of(user) -> str | None:
    """The strongest role the user holds (a superuser is an Admin), cached on the user object."""
    if not user or not user.is_authenticated:
        return None
    if not hasattr(user, "_facet_role"):
        if user.is_superuser:
            user._facet_role = ADMIN
        else:
            names = {group.name for group in user.groups.all()}  # uses prefetched groups when there
            user._facet_role = next((role for role in ROLES if role in names), None)
    return user._facet_role


def has_role(user, needed: str) -> bool:
    role = role_of(user)
    return role is not None and RANK[role] >= RANK[needed]


def set_role(actor: Actor, user: User, role: str) -> None:
    if role not in ROLES:
        raise InvalidRequest({"role": [f"choose one of {', '.join(ROLES)}"]})
    with transaction.atomic():
        user.groups.remove(*Group.objects.filter(name__in=ROLES))
        user.groups.add(Group.objects.get_or_create(name=role)[0])
        audit.record(actor, "user.role", user, entity_type="user", role=role, username=user.username)


def create_token(actor: Actor, user: User, name: str) -> tuple[ApiToken, str]:
    """Returns the token row and its key; the key is not stored and cannot be shown again."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise InvalidRequest({"name": ["give the token a name of 1 to 64 characters"]})
    key = ApiToken.generate_key()
    try:
        with transaction.atomic():
            token = ApiToken.objects.create(user=user, name=name, key_hash=ApiToken.hash(key), hint=key[:12])
            audit.record(actor, "token.create", token, entity_type="token", owner=user.username)
    except IntegrityError:
        raise Conflict({"name": [f"{user.username} already has an active token named {name!r}"]}) from None
    return token, key


def revoke_token(actor: Actor, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(actor, "token.revoke", token, entity_type="token", owner=token.user.username)


def authenticate_token(key: str) -> ApiToken | None:
    token = (ApiToken.objects.select_related("user").filter(key_hash=ApiToken.hash(key), revoked_at__isnull=True)
             .first())
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
