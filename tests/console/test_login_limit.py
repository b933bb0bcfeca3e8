"""Login throttling (issue 14, item 6): one counter per client address in a real redis-server, shared by the
console's login page, the admin's and the API's token endpoint, and by every web process; the address comes only
from trusted proxies; a refusal says when to retry."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 5
TOKEN = "/api/v1/auth/token/"
WRONG = "wrong-password"  # noqa: S105


@pytest.fixture
def limited(settings, redis_url, admin):
    settings.REDIS_URL = redis_url
    settings.FACET_LOGIN_RATE = f"{LIMIT}/minute"
    server = redis.Redis.from_url(redis_url)
    for key in server.scan_iter("facet:login-attempts:*"):
        server.delete(key)
    return server


def api_login(address: str, forwarded: str | None = None, password: str = WRONG):
    headers = {"REMOTE_ADDR": address}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    return APIClient().post(TOKEN, {"username": "alice", "password": password, "name": "t"}, format="json",
                            **headers)


def page_login(path: str, address: str, password: str = WRONG):
    return Client(REMOTE_ADDR=address).post(path, {"username": "alice", "password": password})


def test_a_new_x_forwarded_for_per_request_gains_no_attempt(limited):
    answers = [api_login("198.51.100.7", forwarded=f"10.0.0.{n}") for n in range(LIMIT + 1)]
    assert [a.status_code for a in answers[:LIMIT]] == [401] * LIMIT
    refused = answers[LIMIT]
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "seconds" in refused.json()["detail"]


def test_the_login_page_the_admins_and_the_api_share_one_counter(limited):
    for _ in range(2):
        assert page_login("/login/", "198.51.100.8").status_code == 200  # the form again, with its error
        assert page_login("/admin/login/", "198.51.100.8").status_code == 200
    assert api_login("198.51.100.8").status_code == 401

    page = page_login("/login/", "198.51.100.8", password="correct-horse-battery")  # right, but refused
    assert page.status_code == 200 and "_auth_user_id" not in page.client.session
    assert "Too many login attempts from your address: try again in" in page.content.decode()
    admin_page = page_login("/admin/login/", "198.51.100.8", password="correct-horse-battery")
    assert "Too many login attempts" in admin_page.content.decode()
    assert api_login("198.51.100.8", password="correct-horse-battery").status_code == 429
    assert page_login("/login/", "198.51.100.9", password="correct-horse-battery").status_code == 302  # others


def test_attempts_counted_by_another_web_process_count_here(limited, redis_url):
    """A second process (another web worker) spends the address's attempts; this one then refuses."""
    env = {**os.environ, "FACET_REDIS_URL": redis_url, "FACET_LOGIN_RATE": f"{LIMIT}/minute",
           "FACET_DATA_DIR": str(django_settings.DATA_DIR), "DJANGO_SETTINGS_MODULE": "console.settings",
           "PYTHONPATH": str(ROOT)}
    script = ("import django; django.setup(); from console.services.login_attempts import count_attempt; "
              f"print([count_attempt('198.51.100.10') for _ in range({LIMIT})])")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert api_login("198.51.100.10").status_code == 429


def test_behind_a_trusted_proxy_the_client_it_names_is_counted(limited, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "192.0.2.1"
    for n in range(LIMIT):  # the left part is the client's own writing: ignored
        assert api_login(proxy, forwarded=f"10.9.9.{n}, 203.0.113.5").status_code == 401
    assert api_login(proxy, forwarded="10.9.9.99, 203.0.113.5").status_code == 429
    assert api_login(proxy, forwarded="203.0.113.6").status_code == 401  # another client behind the same proxy
