from rest_framework import authentication, exceptions

from ..access import authenticate_token


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token <key>` (or `Bearer <key>`) with a key made by `POST /api/v1/auth/token/`."""

    keywords = ("token", "bearer")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower().decode() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header takes one token: 'Token <key>'.")
        token = authenticate_token(header[1].decode(errors="replace"))
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        request.api_token = token
        return token.user, token

    def authenticate_header(self, request):
        return "Token"
