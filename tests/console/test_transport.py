"""Transport and host defaults (issue 14, item 12), each in a fresh Python process because the settings read
the environment once: with an https FACET_PUBLIC_URL, plain http is redirected and HSTS is sent; a Host
header other than the console's own names is refused; the Docker host key page names the configured URL."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, django
django.setup()
from django.test import Client
answers = {}
for name, host, proto in [("https", "facet.example", "https"), ("http", "facet.example", "http"),
                          ("foreign", "evil.example", "https"), ("local", "localhost", "https")]:
    response = Client(HTTP_HOST=host, HTTP_X_FORWARDED_PROTO=proto).get("/api/schema/")
    answers[name] = [response.status_code, response.get("Location"), response.get("Strict-Transport-Security")]
print(json.dumps(answers))
"""


def probe(tmp_path: Path, **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FACET_")}
    environment.update(FACET_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="console.settings", **env)
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_https_public_url_redirects_plain_http_sends_hsts_and_refuses_foreign_hosts(tmp_path):
    answers = probe(tmp_path, FACET_PUBLIC_URL="https://facet.example")
    status, _, hsts = answers["https"]
    assert status == 401 and hsts == "max-age=31536000"  # the schema wants a signed-in user
    assert answers["http"][:2] == [301, "https://facet.example/api/schema/"]
    assert answers["foreign"][0] == 400  # DisallowedHost: not the public URL's host
    assert answers["local"][0] == 401


def test_guests_on_plain_http_keep_plain_http(tmp_path):
    answers = probe(tmp_path, FACET_PUBLIC_URL="https://facet.example",
                    FACET_GUEST_CONSOLE_URL="http://10.0.2.2:8000")
    assert answers["http"][0] == 401  # not redirected: guests' plugins use http


@pytest.mark.parametrize("allowed", ["", "evil.example"])
def test_allowed_hosts_default_to_the_public_url_and_can_be_set(tmp_path, allowed):
    chosen = {"FACET_ALLOWED_HOSTS": allowed} if allowed else {}
    answers = probe(tmp_path, FACET_PUBLIC_URL="http://facet.example:8000", **chosen)
    assert answers["foreign"][0] == (401 if allowed else 400)


def test_the_docker_host_key_page_names_the_public_url_not_the_host_header(client, admin, cluster, settings):
    from console.models import Cluster  # noqa: F401  (the cluster fixture makes the default cluster)

    settings.PUBLIC_URL = "https://facet.example"
    settings.ALLOWED_HOSTS = ["attacker.example"]
    client.force_login(admin)
    answer = client.post("/docker-hosts/register/", {"name": "dh-1", "address": ""}, HTTP_HOST="attacker.example")
    page = client.get(answer["Location"], HTTP_HOST="attacker.example")
    assert page.status_code == 200, page.content[:500]
    assert b"FACET_URL=https://facet.example\n" in page.content
    assert b"attacker.example" not in page.content


def test_the_embedded_redis_socket_is_in_the_data_directory(tmp_path):
    """Two installations on one machine, each with its own data directory, never share a broker."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FACET_")}
    environment.update(FACET_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="console.settings")
    result = subprocess.run([sys.executable, "-c", "from django.conf import settings; print(settings.REDIS_URL)"],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == f"unix://{tmp_path.resolve()}/redis.sock"
