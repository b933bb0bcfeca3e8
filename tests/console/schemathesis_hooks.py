"""Schemathesis hooks for tests/console/test_api_fuzz.py, loaded by the `st` process (SCHEMATHESIS_HOOKS).

The token: the one the test made for the role (FACET_FUZZ_TOKEN); when the fuzzer revokes it (an Admin may
revoke any token, anyone their own: `POST /api/v1/tokens/UUID/revoke/`), schemathesis sees a 401, asks again,
and gets a new token of the same user, made in the installation's database as `access.create_token` makes
every token (the process shares the test's FACET_* settings).

The Viewer check: with a Viewer's token no request changes anything, so no POST, PUT, PATCH or DELETE answers
2xx, but for the few a Viewer may send: its own tokens, and the customization checks that compute an answer
and store nothing."""

import os

import requests
import schemathesis

ROLE = os.environ["FACET_FUZZ_ROLE"]
VIEWER_MAY = {
    ("POST", "/api/v1/tokens/"),  # a token of their own
    ("POST", "/api/v1/tokens/{uuid}/revoke/"),  # and revoke it
    ("POST", "/api/v1/customization-scripts/validate/"),  # checks a script, stores nothing
    ("POST", "/api/v1/customization-scripts/generate-sysprep/"),  # writes an answer file, stores nothing
}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@schemathesis.auth(refresh_interval=3600, retry_on=[401])
class RoleToken:
    def __init__(self) -> None:
        self.key = os.environ["FACET_FUZZ_TOKEN"]
        self.fetched = False

    def get(self, case, context) -> str:
        if self.fetched and not self._works():
            self.key = self._new_key()
        self.fetched = True
        return self.key

    def set(self, case, data: str, context) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Token {data}"}

    def _works(self) -> bool:
        answer = requests.get(f"{os.environ['FACET_FUZZ_URL']}/api/v1/tokens/?page_size=1",
                              headers={"Authorization": f"Token {self.key}"}, timeout=30)
        return answer.status_code != 401

    @staticmethod
    def _new_key() -> str:
        import django

        django.setup()
        from django.contrib.auth.models import User

        from console.core import access
        from console.core.actors import Actor

        user = User.objects.get(username=os.environ["FACET_FUZZ_USER"])
        count = user.api_tokens.count()
        return access.create_token(Actor(user=user), user, f"fuzz-{count}")[1]


@schemathesis.check
def viewer_changes_nothing(ctx, response, case) -> None:
    if ROLE != "viewer" or case.method.upper() not in MUTATING:
        return
    if (case.method.upper(), case.operation.path) in VIEWER_MAY:
        return
    if 200 <= response.status_code < 300:
        raise AssertionError(f"a Viewer's {case.method.upper()} {case.formatted_path} answered "
                             f"{response.status_code}: a Viewer may change nothing")
