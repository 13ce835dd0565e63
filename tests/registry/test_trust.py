"""One trust mechanism: trust=True or a trusted publisher, otherwise a refusal naming the fix."""

from __future__ import annotations

import pytest

from mlcycle.errors import Untrusted
from mlcycle.registry import is_trusted, require_trust
from mlcycle.settings import RegistrySettings, Settings


def test_trust_comes_from_the_caller_or_the_publisher_list() -> None:
    settings = Settings(registry=RegistrySettings(trusted_publishers=("ci",)))
    assert is_trusted(trust=True, publisher=None, settings=settings)
    assert is_trusted(trust=False, publisher="ci", settings=settings)
    assert is_trusted(trust=False, publisher="ci", settings=settings.registry)
    assert not is_trusted(trust=False, publisher="eve", settings=settings)
    assert not is_trusted(trust=False, publisher=None, settings=settings)
    require_trust("x", trust=False, publisher="ci", settings=settings)


def test_refusal_names_the_thing_and_both_fixes() -> None:
    with pytest.raises(Untrusted) as caught:
        require_trust("model models:/m/1", trust=False, publisher="eve", settings=Settings())
    message = str(caught.value)
    assert "model models:/m/1" in message
    assert "published by 'eve'" in message
    assert "trust=True" in message
    assert "add 'eve' to [registry] trusted_publishers" in message
    with pytest.raises(Untrusted, match=r"unknown publisher.*add its publisher"):
        require_trust("a pickle", trust=False, publisher=None, settings=Settings())
