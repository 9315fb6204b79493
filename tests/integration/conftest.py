from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devharness.stack import FleetStack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[FleetStack]:
    s = FleetStack(tmp_path / "fleet", units=2)
    try:
        s.setup()
        yield s
    finally:
        s.teardown()
