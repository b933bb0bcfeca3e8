"""`facet login` trades a username and password for a named API token and saves it; `facet logout`
revokes that token and removes the file."""

import getpass
import ipaddress
import os
import socket
import time
import urllib.parse

from .client import ApiRefused, Client, Unauthorized, config_path, normalize_url, read_config, write_config
from .errors import OK, NotLoggedIn, UsageError
from .spec import Invocation


def is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_token_name() -> str:
    return f"cli@{socket.gethostname()}"[:64]


def login(call: Invocation) -> int:
    given = call.values
    url = given.get("url") or os.environ.get("FACET_URL")
    if not url:
        raise UsageError("missing key url (or FACET_URL): facet login url=URL username=NAME")
    try:
        client = Client(normalize_url(url))
    except ValueError as exc:
        raise UsageError(f"url: {exc}") from None
    if urllib.parse.urlsplit(client.url).scheme == "http" and not is_loopback(client.url):
        call.err.write(f"Warning: {client.url} is plain HTTP; the password and the token cross the network "
                       "unencrypted. Use https:// unless this network is trusted.\n")
    username = given["username"]
    password = given.get("password") or os.environ.get("FACET_PASSWORD") or \
        getpass.getpass(f"Password for {username} at {client.url}: ")
    name = given.get("name") or default_token_name()
    try:
        answer = obtain(client, username, password, name)
    except ApiRefused as exc:
        if exc.status != 409 or "name" in given:
            raise
        # This machine already holds a token of that name (an earlier login): make a second one, dated.
        stamp = time.strftime(" %Y-%m-%d %H:%M:%S")
        answer = obtain(client, username, password, name[: 64 - len(stamp)] + stamp)
    path = write_config({"url": client.url, "token": answer["token"], "token_uuid": answer.get("uuid"),
                         "token_name": answer.get("name"), "username": username})
    call.out.write(f"Logged in to {client.url} as {username}; token {answer.get('name')!r} saved in {path}\n")
    if os.environ.get("FACET_TOKEN") or os.environ.get("FACET_URL"):
        call.err.write("Note: FACET_URL or FACET_TOKEN is set, and wins over the saved login.\n")
    return OK


def obtain(client: Client, username: str, password: str, name: str) -> dict:
    try:
        return client.request("POST", "/auth/token/", body={"username": username, "password": password, "name": name})
    except Unauthorized as exc:
        raise NotLoggedIn(f"login refused: {exc.detail}") from None


def logout(call: Invocation) -> int:
    saved = read_config()
    if not saved.get("token"):
        call.out.write(f"Not logged in ({config_path()} holds no token).\n")
        return OK
    if saved.get("token_uuid") and saved.get("url"):
        try:
            Client(saved["url"], saved["token"]).request("POST", f"/tokens/{saved['token_uuid']}/revoke/")
        except Unauthorized:
            pass  # already revoked: nothing left to revoke
        except ApiRefused as exc:
            if exc.status != 404:
                raise
    config_path().unlink()
    call.out.write(f"Logged out of {saved.get('url')}: token {saved.get('token_name')!r} revoked, "
                   f"{config_path()} removed.\n")
    return OK
