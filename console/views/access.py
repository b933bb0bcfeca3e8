"""Audit log, users and roles, API tokens."""

from django.contrib import messages
from django.contrib.auth.models import User
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from console.core import access, audit
from console.core.access import ADMIN
from console.core.errors import ServiceError
from console.core.models import ApiToken, AuditEvent
from console.core.views import actor, paginate, query_without, role_required

from ..filtersets import AuditEventFilterSet
from ..forms.inventory import RoleForm, TokenForm, UserCreateForm


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
    return render(request, "console/settings.html", {
        "token_form": TokenForm(),
        "tokens": tokens if is_admin else tokens.filter(user=request.user),
        "users": [(u, access.role_of(u)) for u in User.objects.prefetch_related("groups").order_by("username")]
        if is_admin else [],
        "roles": access.ROLES,
        "user_form": UserCreateForm() if is_admin else None,
        "new_token": request.session.pop("new_token", None),
    })


@require_POST
@role_required()
def token_create(request):
    form = TokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, "name: give the token a name")
        return redirect("settings")
    try:
        token, key = access.create_token(actor(request), request.user, form.cleaned_data["name"])
    except ServiceError as error:
        for problems in error.errors.values():
            for problem in problems:
                messages.error(request, problem)
        return redirect("settings")
    # Shown once, on the next page only; never stored.
    request.session["new_token"] = {"name": token.name, "key": key}
    return redirect("settings")


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
        for field, problems in form.errors.items():
            for problem in problems:
                messages.error(request, f"{field}: {problem}")
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
