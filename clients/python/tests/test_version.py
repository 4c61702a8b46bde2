"""The package's version is the server's workspace version."""

from __future__ import annotations

import re
from importlib import metadata, resources

import keyhaven
from helpers import REPO


def workspace_version() -> str:
    text = (REPO / "Cargo.toml").read_text()
    section = text.split("[workspace.package]", 1)[1].split("\n[", 1)[0]
    found = re.search(r'^version\s*=\s*"([^"]+)"', section, re.MULTILINE)
    assert found, "no version in [workspace.package] of Cargo.toml"
    return found.group(1)


def test_version_is_the_workspace_version() -> None:
    assert keyhaven.__version__ == workspace_version()
    assert metadata.version("keyhaven") == workspace_version()


def test_installed_package_is_typed_and_licensed() -> None:
    assert resources.files("keyhaven").joinpath("py.typed").is_file()
    dist = metadata.distribution("keyhaven")
    names = {p.name for p in dist.files or ()}
    assert {"LICENSE-MIT", "LICENSE-APACHE"} <= names, names
    requires = dist.requires or []
    runtime = [r for r in requires if "extra ==" not in r]
    assert len(runtime) == 1 and runtime[0].startswith("httpx"), requires
