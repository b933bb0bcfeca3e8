from rest_framework import permissions

from ..access import ADMIN, OPERATOR, VIEWER, has_role


class RolePermission(permissions.BasePermission):
    """Reading needs the Viewer role; changing needs the view's `write_role` (Operator by default)."""

    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        needed = VIEWER if request.method in permissions.SAFE_METHODS else getattr(view, "write_role", OPERATOR)
        return has_role(request.user, needed)


class AdminOnly(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return has_role(request.user, ADMIN)
