"""One trust mechanism for everything that may run code when loaded.

A pickled model (the ``pyfunc`` flavor, an imported MLflow pickle) or a
pipeline artifact runs its publisher's code on load. It loads only when the
caller says ``trust=True`` or its publisher is in ``registry.trusted_publishers``;
otherwise ``Untrusted`` names the thing and both ways to trust it. Nothing
ever falls back to pickle silently.
"""

from __future__ import annotations

from mlcycle.errors import Untrusted
from mlcycle.settings import RegistrySettings, Settings

__all__ = ["is_trusted", "require_trust"]


def _registry(settings: Settings | RegistrySettings) -> RegistrySettings:
    return settings.registry if isinstance(settings, Settings) else settings


def is_trusted(
    *, trust: bool, publisher: str | None, settings: Settings | RegistrySettings
) -> bool:
    """Whether the caller trusts it (``trust=True``) or its publisher is a trusted one.

    >>> ci = RegistrySettings(trusted_publishers=("ci",))
    >>> is_trusted(trust=False, publisher="ci", settings=ci)
    True
    >>> is_trusted(trust=False, publisher="eve", settings=ci)
    False
    """
    if trust:
        return True
    return publisher is not None and publisher in _registry(settings).trusted_publishers


def require_trust(
    what: str, *, trust: bool, publisher: str | None, settings: Settings | RegistrySettings
) -> None:
    """Raise ``Untrusted`` naming ``what`` and the fix unless it is trusted (see ``is_trusted``)."""
    if is_trusted(trust=trust, publisher=publisher, settings=settings):
        return
    by = f"published by '{publisher}'" if publisher else "from an unknown publisher"
    add = f"'{publisher}'" if publisher else "its publisher"
    raise Untrusted(
        f"{what} ({by}) would run code when loaded, and it is not trusted: if you trust it, "
        f"pass trust=True, or add {add} to [registry] trusted_publishers in mlcycle.toml"
    )
