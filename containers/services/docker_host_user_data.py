"""The cloud-config that turns a fresh Debian or Ubuntu VM into a Docker host: it installs Docker and our
volume plugin and gives the plugin this host's own token (and nothing more powerful)."""

import yaml

PLUGIN_ENV_FILE = "/etc/facet/volume-plugin.env"
PLUGIN_DEB_PATH = "/api/v1/docker-host/plugin.deb"  # served by the console to Docker hosts' tokens


def render(*, host_name: str, console_url: str, key: str, default_storage_container: str) -> str:
    """user-data for cloud-init. The token sits only in a root-only file inside the VM."""
    environment = "".join(f"{name}={value}\n" for name, value in (
        ("FACET_URL", console_url), ("FACET_TOKEN", key), ("FACET_DOCKER_HOST", host_name),
        ("FACET_DEFAULT_CONTAINER", default_storage_container)))
    # The token is read from the root-only file, so it is written down once.
    fetch_plugin = (f'. {PLUGIN_ENV_FILE} && curl -fsS -H "Authorization: Token $FACET_TOKEN" '
                    f'-o /var/cache/facet-volume-plugin.deb "$FACET_URL{PLUGIN_DEB_PATH}"')
    config = {
        "hostname": host_name,
        "package_update": True,
        "packages": ["docker.io", "curl", "e2fsprogs", "xfsprogs", "python3"],
        "write_files": [{"path": PLUGIN_ENV_FILE, "permissions": "0600", "owner": "root:root",
                         "content": environment}],
        "runcmd": [
            ["systemctl", "enable", "--now", "docker"],
            ["sh", "-c", fetch_plugin],
            ["apt-get", "install", "-y", "/var/cache/facet-volume-plugin.deb"],
            ["systemctl", "enable", "--now", "facet-volume-plugin"],
        ],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)
