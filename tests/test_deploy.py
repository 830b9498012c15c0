"""The container never listens beyond loopback unless its operator says so."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_image_binds_loopback_unless_told_otherwise() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (cmd,) = re.findall(r"^CMD (.+)$", dockerfile, flags=re.MULTILINE)
    assert "0.0.0.0" not in cmd and "$IMGFINDER_HOST" in cmd
    assert re.search(r"^ENV .*IMGFINDER_HOST=127\.0\.0\.1", dockerfile, flags=re.MULTILINE)
