"""The API against schemathesis (issue 14, "Proof, in CI"): a live installation started by the test (redis-server,
a Celery worker, a Guest Tools Service instance and a gunicorn web process on loopback, on the test's SQLite file,
seeded with the demo cluster), fuzzed from its own OpenAPI schema with an Admin's, an Operator's and a Viewer's
token. No answer may be a server error or fall outside the schema (status code, content type, body); with the
Viewer's token nothing may change.

Bounded and repeatable: each role gets a fixed time budget (`--max-time`, 90 s in all) and schemathesis's
deterministic generation (the same inputs in the same order on every run; a slower machine gets through fewer of
them; it also keeps no example database, so no failure of an earlier run is replayed first).

Nothing is excluded: every operation of the schema runs here, uploads and Guest Tools calls included.
Schemathesis's own options that are left out, and why:
- `--generation-with-security-parameters false`: the token is the role's (tests/console/schemathesis_hooks.py);
  made-up tokens and session cookies are refused before any view runs, which test_api.py shows for each kind.
- the checks `negative_data_rejection` / `positive_data_acceptance` (does the API refuse exactly what the schema
  forbids?) are not asked for: the services check more than a schema can say (a name free in its cluster, an
  address in a network's range), so a 400 for schema-valid data is right, and is documented.
- `--workers 1`: one request at a time, on a machine other test runs share; races have their own tests."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.contrib.auth.models import User
from django.core.management import call_command

from console.core import access
from console.core.actors import Actor
from console.core.models import AuditEvent, Task
from console.services import processes
from ngt.daemon import commands
from tests.conftest import make_user
from tests.ngt.test_agent import free_vip

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The Viewer first, while the seeded cluster is whole; the Admin last, whose deletes leave less to reach.
ROLES = [(access.VIEWER, "vera", 25), (access.OPERATOR, "oscar", 30), (access.ADMIN, "alice", 35)]
CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "viewer_changes_nothing"]
VIEWER_AUDITED = {"token.create", "token.revoke"}  # their own tokens: what a Viewer may change


@pytest.fixture
def installation(celery_processes, redis_url, settings):
    """The demo cluster, then the processes `manage.py serve` starts (the worker serves the demo's hosts)."""
    call_command("seed_demo", vms=8)
    for role, username, _ in ROLES:
        make_user(username, role)
    commands.redis_client(redis_url).delete(commands.LEASE_KEY)  # another test's instance no longer leads
    celery_processes.worker()
    host = processes.guest_tools_service_host()
    celery_processes.start("guest-tools", processes.guest_tools_service_command(host) + f" --address {free_vip()}",
                           "leading")
    return celery_processes.web(workers=2)


def fuzz(url: str, schema: Path, role: str, username: str, seconds: int, env: dict) -> str:
    """Run schemathesis (in the schema's directory, where it may leave its files) with the role's token."""
    user = User.objects.get(username=username)
    key = access.create_token(Actor(user=user), user, "fuzz")[1]
    command = [sys.executable, "-m", "schemathesis.cli", "run", str(schema), "--url", url,
               "--checks", ",".join(CHECKS), "--max-time", str(seconds), "--generation-deterministic",
               "--generation-with-security-parameters", "false", "--workers", "1", "--no-color"]
    done = subprocess.run(command, cwd=schema.parent, capture_output=True, text=True, timeout=seconds + 120, env={
        **env, "SCHEMATHESIS_HOOKS": "tests.console.schemathesis_hooks", "DJANGO_SETTINGS_MODULE": "console.settings",
        "FACET_FUZZ_ROLE": role.lower(), "FACET_FUZZ_USER": username, "FACET_FUZZ_TOKEN": key,
        "FACET_FUZZ_URL": url})
    assert done.returncode == 0, f"schemathesis with {role}'s token:\n{failures(done.stdout + done.stderr)}"
    return done.stdout


def failures(output: str, limit: int = 12_000) -> str:
    """The failures and summary of a run, cut to a readable length (a failing body can be a megabyte)."""
    start = output.find("FAILURES")
    return output[start if start >= 0 else 0:][-limit:]


def test_the_api_answers_every_role_within_its_schema_and_a_viewer_changes_nothing(installation, celery_processes,
                                                                                   tmp_path):
    admin = User.objects.get(username="alice")
    schema = tmp_path / "schema.json"
    answer = requests.get(f"{installation}/api/schema/?format=json", timeout=60,
                          headers={"Authorization": f"Token {access.create_token(Actor(user=admin), admin, 's')[1]}"})
    assert answer.status_code == 200
    schema.write_bytes(answer.content)
    env = celery_processes.env()

    for role, username, seconds in ROLES:
        output = fuzz(installation, schema, role, username, seconds, env)
        selected = re.search(r"Selected: (\d+)/(\d+)", output)
        assert selected and selected[1] == selected[2], "an operation of the schema was left out"
        assert f"Tested: {selected[1]}" in output, output[-3000:]

    viewer_tasks = Task.objects.filter(created_by__username="vera")
    assert not viewer_tasks.exists(), list(viewer_tasks.values_list("kind", flat=True))
    viewer_changes = AuditEvent.objects.filter(username="vera").exclude(action__in=VIEWER_AUDITED)
    assert not viewer_changes.exists(), list(viewer_changes.values_list("action", flat=True))
    # The 202s were real: the worker ran what the Operator and the Admin asked for.
    assert Task.objects.filter(created_by__username__in=["oscar", "alice"], status="succeeded").exists()
