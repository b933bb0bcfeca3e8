"""Audit log, users and roles, API tokens."""

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.signing import BadSignature
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_POST

from console.core import access, audit
from console.core.access import ADMIN
from console.core.errors import ServiceError
from console.core.models import ApiToken, AuditEvent
from console.core.views import actor, form_refused, paginate, query_without, role_required

from ..filtersets import AuditEventFilterSet
from ..forms.inventory import RoleForm, TokenForm, UserCreateForm

# A new token's key goes to the browser alone, in a short-lived signed cookie read by the page the creation
# redirects to, which shows it once and drops the cookie: no server-side store (session, database) holds it.
NEW_TOKEN_COOKIE = "facet_new_token"  # noqa: S105 (a name, not a secret)
NEW_TOKEN_SALT = "facet.settings.new-token"  # noqa: S105 (a namespace, not a secret)
NEW_TOKEN_SECONDS = 120


@role_required()
def audit_list(request):
    filterset = AuditEventFilterSet(request.GET, queryset=AuditEvent.objects.all())
    queryset = filterset.qs if filterset.is_valid() else AuditEvent.objects.none()
    return render(request, "console/audit_list.html", {
        "filterset": filterset, "page": paginate(request, queryset), "query": query_without(request, "page")})


@role_required()
def settings_home(request):
    """Everyone manages their own tokens here; Admins also manage users and see every token."""
    tokens = ApiToken.objects.select_related("user")
    is_admin = access.has_role(request.user, ADMIN)
    new_token = _new_token(request)
    response = render(request, "console/settings.html", {
        "token_form": TokenForm(),
        "tokens": tokens if is_admin else tokens.filter(user=request.user),
        "users": [(u, access.role_of(u)) for u in User.objects.prefetch_related("groups").order_by("username")]
        if is_admin else [],
        "roles": access.ROLES,
        "user_form": UserCreateForm() if is_admin else None,
        "new_token": new_token,
    })
    if new_token is not None:
        response.delete_cookie(NEW_TOKEN_COOKIE, path=reverse("settings"), samesite="Strict")
        patch_cache_control(response, no_store=True)
    return response


def _new_token(request) -> dict | None:
    """The token just created by this user, from its one-time cookie."""
    try:
        value = request.get_signed_cookie(NEW_TOKEN_COOKIE, salt=NEW_TOKEN_SALT, max_age=NEW_TOKEN_SECONDS)
        token = json.loads(value)
    except (KeyError, BadSignature, ValueError):
        return None
    return token if token.get("user") == request.user.pk else None


@require_POST
@role_required()
def token_create(request):
    form = TokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the token a name.")
        return redirect("settings")
    try:
        token, key = access.create_token(actor(request), request.user, form.cleaned_data["name"])
    except ServiceError as error:
        for problems in error.errors.values():
            for problem in problems:
                messages.error(request, problem)
        return redirect("settings")
    response = redirect("settings")
    response.set_signed_cookie(
        NEW_TOKEN_COOKIE, json.dumps({"user": request.user.pk, "name": token.name, "key": key}),
        salt=NEW_TOKEN_SALT, max_age=NEW_TOKEN_SECONDS, path=reverse("settings"), httponly=True,
        secure=settings.SESSION_COOKIE_SECURE, samesite="Strict")
    return response


@require_POST
@role_required()
def token_revoke(request, uuid):
    tokens = ApiToken.objects.all() if access.has_role(request.user, ADMIN) else request.user.api_tokens.all()
    token = get_object_or_404(tokens.select_related("user"), uuid=uuid)
    access.revoke_token(actor(request), token)
    messages.success(request, f"Token {token.name} of {token.user.username} revoked")
    return redirect("settings")


@require_POST
@role_required(ADMIN)
def user_create(request):
    form = UserCreateForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        user = User.objects.create_user(data["username"], data["email"], data["password"])
        access.set_role(actor(request), user, data["role"])
        audit.record(actor(request), "user.create", user, entity_type="user", username=user.username)
        messages.success(request, f"User {user.username} created as {data['role']}")
    else:
        form_refused(request, form)
    return redirect("settings")


@require_POST
@role_required(ADMIN)
def user_role(request, user_id):
    user = get_object_or_404(User, pk=user_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        if user == request.user and form.cleaned_data["role"] != ADMIN:
            messages.error(request, "You cannot take the Admin role from yourself.")
        else:
            access.set_role(actor(request), user, form.cleaned_data["role"])
            messages.success(request, f"{user.username} is now {form.cleaned_data['role']}")
    return redirect("settings")
