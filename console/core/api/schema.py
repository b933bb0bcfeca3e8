"""The API schema's generator: drf-spectacular's, plus the errors each operation may answer. Its own only names
the success; a client (and the schema fuzzer, tests/console/test_api_fuzz.py) must learn from the schema that a
change can be refused (400, 409) or asked again later (423), that a uuid or a page can be missing (404), and that
a token can be refused (401) or not allowed (403). It also says how a token is sent."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework.permissions import AllowAny

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
ERROR_BODY = {
    "type": "object",
    "description": "What was wrong: `detail`, or a message list per field of the request",
    "additionalProperties": True,
}


def error_response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR_BODY}}}


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response") -> dict:
        responses = super()._get_response_bodies(direction)
        if direction == "response":
            for code, description in self._errors().items():
                responses.setdefault(code, error_response(description))
        return responses

    def _errors(self) -> dict[str, str]:
        errors = {"401": "No token, or one that is wrong or revoked"}
        if not any(isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            errors["403"] = "Your role does not allow this"
        if self.method in MUTATING:
            errors["400"] = "The request is not valid: a message per field"
            errors["409"] = "The request conflicts with the current state (a record still in use, a VM powered on...)"
            errors["413"] = "The request body is over the limit"
            errors["423"] = "Another change of the same thing is under way: ask again once it has ended"
        elif self._is_list_view():
            errors["400"] = "A filter's value is not valid"
        if "{" in self.path:
            errors["404"] = "No record has this uuid (or it is not yours to see)"
        elif self._is_list_view() and self.method == "GET":
            errors["404"] = "No such page"
        return errors


class TokenAuthentication(OpenApiAuthenticationExtension):
    """How the schema says to authenticate: an API token in the Authorization header."""

    target_class = "console.core.api.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Token <key>`: a key from `POST /api/v1/auth/token/` or the settings page"}
