"""The raw-byte privacy tests of other modules, again on an encrypted store (issue 22). Their raw reads
go through `tests.sqlcipher_pages.readable_bytes`, which decrypts every page of an encrypted store,
free pages included, so encryption cannot hide a secret that was stored or a forget that failed.
(test_forget.py runs every one of its tests on both kinds of store itself.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_store, test_suggestions
from tests.conftest import make_settings
from tests.sqlcipher_pages import raw_file_bytes


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path / "data", encrypt=True)


@pytest.fixture(autouse=True)
def _no_plaintext_in_the_files(settings):
    yield
    raw = raw_file_bytes(settings.data_dir)
    assert b"SQLite format 3" not in raw[:16]
    assert [w for w in (b"zebrafinch", b"Priya", b"ANTHROPIC_API_KEY", b"REDACTED") if w in raw] == []


test_secrets_are_redacted_before_they_are_stored = test_store.test_secrets_are_redacted_before_they_are_stored
test_forgetting_removes_the_suggestions_that_rest_on_it = (
    test_suggestions.test_forgetting_removes_the_suggestions_that_rest_on_it)
