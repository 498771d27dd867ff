"""A migrated database per test, on every configured backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshup.store.db import Database
from tests.support.databases import database_url


@pytest.fixture
def db(backend: str, tmp_path: Path) -> Iterator[Database]:
    with database_url(backend, tmp_path) as url:
        database = Database(url)
        database.migrate()
        try:
            yield database
        finally:
            database.dispose()
