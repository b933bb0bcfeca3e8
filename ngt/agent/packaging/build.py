"""Build the agent's packages from this source tree, laid out as the tools ISO's installer/ holds them:
linux/ with a .deb (dpkg-deb), an .rpm (rpmbuild), a tarball for other distributions and install.sh;
windows/ with the agent's modules and install.ps1.

    python3 ngt/agent/packaging/build.py OUT_DIR
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
AGENT = HERE.parent
# Read, not imported: the build needs no package of the console on its path.
AGENT_VERSION = re.search(r'AGENT_VERSION = "([^"]+)"', (AGENT / "__init__.py").read_text()).group(1)

NAME = "facet-guest-tools"
LIBRARY = f"usr/lib/{NAME}"
MODULE = "facet_guest_tools"  # the agent's package as installed in the guest
WRAPPER = f"""#!/bin/sh
PYTHONPATH=/{LIBRARY}${{PYTHONPATH:+:$PYTHONPATH}} exec python3 -m {MODULE} "$@"
"""
CONTROL = f"""Package: {NAME}
Version: {AGENT_VERSION}
Architecture: all
Maintainer: Facet <facet@localhost>
Depends: python3 (>= 3.9)
Section: admin
Priority: optional
Description: Facet Guest Tools agent
 Talks to the Facet Guest Tools Service over the virtio-serial port or mutual TLS.
"""


def stage(root: Path) -> None:
    """The installed tree: the agent's modules, its command, its unit, its configuration directory."""
    module = root / LIBRARY / MODULE
    module.mkdir(parents=True)
    for source in sorted(AGENT.glob("*.py")):
        shutil.copy2(source, module / source.name)
    command = root / "usr/bin" / NAME
    command.parent.mkdir(parents=True)
    command.write_text(WRAPPER)
    command.chmod(0o755)
    unit = root / "lib/systemd/system" / f"{NAME}.service"
    unit.parent.mkdir(parents=True)
    shutil.copy2(AGENT / f"{NAME}.service", unit)
    (root / "etc" / NAME).mkdir(parents=True, mode=0o755)


def build_deb(staged: Path, out: Path) -> Path:
    tree = Path(tempfile.mkdtemp(prefix="deb-"))
    try:
        shutil.copytree(staged, tree, dirs_exist_ok=True)
        (tree / "DEBIAN").mkdir()
        (tree / "DEBIAN/control").write_text(CONTROL)
        for script in ("postinst", "prerm"):
            shutil.copy2(HERE / "scripts" / script, tree / "DEBIAN" / script)
            (tree / "DEBIAN" / script).chmod(0o755)
        package = out / f"{NAME}_{AGENT_VERSION}_all.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(package)], check=True,
                       capture_output=True)
        return package
    finally:
        shutil.rmtree(tree)


def build_rpm(staged: Path, out: Path) -> Path:
    top = Path(tempfile.mkdtemp(prefix="rpm-"))
    try:
        subprocess.run(["rpmbuild", "-bb", "--define", f"_topdir {top}", "--define", f"stage {staged}",
                        "--define", f"version {AGENT_VERSION}", str(HERE / f"{NAME}.spec")], check=True,
                       capture_output=True)
        built = next((top / "RPMS" / "noarch").glob("*.rpm"))
        return Path(shutil.copy2(built, out / built.name))
    finally:
        shutil.rmtree(top)


def build_tarball(staged: Path, out: Path) -> Path:
    tarball = out / f"{NAME}-{AGENT_VERSION}.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        for path in sorted(staged.iterdir()):
            archive.add(path, arcname=path.name)
    return tarball


def build_linux(out: Path) -> list[Path]:
    """Every file of installer/linux/, built into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix="stage-")) / "root"
    try:
        stage(staged)
        installer = Path(shutil.copy2(HERE / "install.sh", out / "install.sh"))
        return [build_deb(staged, out), build_rpm(staged, out), build_tarball(staged, out), installer]
    finally:
        shutil.rmtree(staged.parent)


def build_windows(out: Path) -> list[Path]:
    """installer/windows/: the agent's modules as install.ps1 copies them, and the script."""
    module = out / MODULE
    module.mkdir(parents=True, exist_ok=True)
    copied = [Path(shutil.copy2(source, module / source.name)) for source in sorted(AGENT.glob("*.py"))]
    return [*copied, Path(shutil.copy2(HERE / "windows" / "install.ps1", out / "install.ps1"))]


def build(out: Path) -> list[Path]:
    """The whole installer/ tree into `out`, swapped in whole for what an older build left there: a console
    making tools ISOs meanwhile reads the old tree or the new one, never half of one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        fresh.chmod(0o755)
        built = build_linux(fresh / "linux") + build_windows(fresh / "windows")
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    previous = out.with_name(f".{out.name}-previous")
    shutil.rmtree(previous, ignore_errors=True)
    if out.exists():
        os.rename(out, previous)
    os.rename(fresh, out)
    shutil.rmtree(previous, ignore_errors=True)
    return [out / path.relative_to(fresh) for path in built]


if __name__ == "__main__":
    for built in build(Path(sys.argv[1] if len(sys.argv) > 1 else "dist/guest-tools")):
        print(built)
