"""The HTTP status of each gRPC code, read from the README's table (the one users read):
Envoy's grpcToHttpStatus, but UNAUTHENTICATED is 403 as Tinybird documents it. The tests of both
gateways compare against this one reading rather than copies of the table."""

from __future__ import annotations

import re
from pathlib import Path

_README = Path(__file__).resolve().parent.parent / "README.md"
# `| INVALID_ARGUMENT (3) | 400 | …`: the code's name, then the first status in the HTTP column
# (`200; 202 for a queued write` is 200, `403 (Envoy's 401, replaced)` is 403).
_ROW = re.compile(r"^\| ([A-Z_]+) \((\d+)\) \| (\d{3})\b", re.MULTILINE)


def _read() -> dict[str, int]:
    table = {name: int(status) for name, _, status in _ROW.findall(_README.read_text())}
    assert len(table) == 17, f"the README's status table has {len(table)} rows, not 17"
    return table


# Every code, OK included, by name.
README_STATUSES: dict[str, int] = _read()
# The error codes only.
README_ERROR_STATUSES: dict[str, int] = {k: v for k, v in README_STATUSES.items() if k != "OK"}
