from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions, permissions

from ..models import DockerHost
from ..services.docker_hosts import authenticate


class DockerHostAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token <key>` with a Docker host's key. It has no user: `request.auth` is the host, and
    only the plugin endpoints accept it (the console's own token class does not know these keys)."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() not in (b"token", b"bearer"):
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header takes one token: 'Token <key>'.")
        host = authenticate(header[1].decode(errors="replace"))
        if host is None:
            raise exceptions.AuthenticationFailed("Unknown Docker host key (was the host removed?).")
        return AnonymousUser(), host

    def authenticate_header(self, request):
        return "Token"


class IsDockerHost(permissions.BasePermission):
    message = "Only a Docker host's own key reaches this endpoint."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, DockerHost)
