"""The process's vault (arrears_shared.vault.keys) caches data keys by subject alone, for every database the
process talks to. Test modules here use databases of their own and reuse account ids (ACC-000001, ...): a
key cached from one database would be taken as present in the next one, which would then seal with it and
store no key row of its own (its records unreadable once the cache expires). Each module, and each test,
starts with an empty cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from arrears_shared.vault import keys


@pytest.fixture(scope="module", autouse=True)
def _vault_cache_per_module() -> Iterator[None]:
    keys.reset()  # before the module's own fixtures (its service, its database) use the vault
    yield


@pytest.fixture(autouse=True)
def _vault_cache_per_test() -> Iterator[None]:
    keys.reset()
    yield
