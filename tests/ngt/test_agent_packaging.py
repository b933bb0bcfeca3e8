"""The agent's packages as build.py makes them: what the .deb and .rpm hold, the agent run from a tree the
.deb was unpacked into, and install.sh copying the files in place where neither dpkg nor rpm is used."""

import os
import subprocess
from pathlib import Path

import pytest

from ngt.agent import AGENT_VERSION

pytestmark = pytest.mark.slow
INSTALLED = ["etc/facet-guest-tools", "lib/systemd/system/facet-guest-tools.service", "usr/bin/facet-guest-tools",
             *(f"usr/lib/facet-guest-tools/facet_guest_tools/{name}" for name in (
                 "__init__.py", "__main__.py", "config.py", "guest.py", "protocol.py"))]


@pytest.fixture(scope="module")
def packages(built_packages) -> dict[str, Path]:
    return {path.name.rsplit(".", 1)[-1] if not path.name.endswith(".tar.gz") else "tar.gz": path
            for path in (built_packages / "linux").iterdir()}


def run_agent(tree: Path, *arguments: str) -> subprocess.CompletedProcess:
    """The installed agent, with the system's python3 (not the console's venv), as the guest runs it."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tree / "usr/lib/facet-guest-tools")}
    return subprocess.run(["/usr/bin/python3", "-m", "facet_guest_tools", *arguments], env=env, cwd=tree,
                          capture_output=True, text=True, timeout=30)


def test_the_packages_and_installer_are_built(packages):
    assert sorted(packages) == ["deb", "rpm", "sh", "tar.gz"]
    assert packages["deb"].name == f"facet-guest-tools_{AGENT_VERSION}_all.deb"
    listed = subprocess.run(["rpm", "-qpl", packages["rpm"]], capture_output=True, text=True, check=True).stdout
    assert set(INSTALLED) <= {line.lstrip("/") for line in listed.splitlines()}
    info = subprocess.run(["dpkg-deb", "-f", packages["deb"], "Version", "Depends"], capture_output=True,
                          text=True, check=True).stdout
    assert f"Version: {AGENT_VERSION}" in info and "python3 (>= 3.9)" in info
    subprocess.run(["sh", "-n", packages["sh"]], check=True)


def test_the_agent_runs_from_the_unpacked_deb(packages, tmp_path):
    subprocess.run(["dpkg-deb", "-x", packages["deb"], tmp_path], check=True)
    assert all((tmp_path / path).exists() for path in INSTALLED)
    status = run_agent(tmp_path, "status", "--config-dir", str(tmp_path / "etc/facet-guest-tools"),
                       "--state-dir", str(tmp_path / "run"))
    assert status.returncode == 3 and f"agent version:      {AGENT_VERSION}" in status.stdout
    assert "(no configuration installed)" in status.stdout
    wrapper = (tmp_path / "usr/bin/facet-guest-tools").read_text()
    assert "PYTHONPATH=/usr/lib/facet-guest-tools" in wrapper and "python3 -m facet_guest_tools" in wrapper


def test_install_sh_copies_the_files_in_place(packages, tmp_path):
    result = subprocess.run(["sh", packages["sh"], "--root", tmp_path / "guest"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert all((tmp_path / "guest" / path).exists() for path in INSTALLED)
    assert run_agent(tmp_path / "guest", "status", "--config-dir", str(tmp_path / "etc"), "--state-dir",
                     str(tmp_path / "run")).returncode == 3
