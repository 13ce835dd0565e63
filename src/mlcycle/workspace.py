"""The workspace: settings, stores and clock opened together, and the SDK acting on them."""

from __future__ import annotations

__all__: list[str] = []
