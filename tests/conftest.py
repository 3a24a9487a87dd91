from __future__ import annotations

from pathlib import Path

import pytest

from hn.vault import identities
from hn.vault.home import Home
from hn.vault.identities import Identity


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "vault")
    h.ensure()
    return h


@pytest.fixture
def alice(home: Home) -> Identity:
    return identities.create(home, "alice")
