# TEMPORARY until tests/conftest.py lands
import tempfile
from pathlib import Path

import pytest
from arrears_cli.stack.broker import EmbeddedBroker
from arrears_cli.stack.postgres import EmbeddedPostgres


@pytest.fixture(scope="session")
def broker():
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def pg():
    d = tempfile.mkdtemp(prefix="t")
    with EmbeddedPostgres(Path(d) / "pg", fast=True) as p:
        yield p
