"""CARP-S's Hydra configuration composed in-process, shared by the CARP-S test modules.

No ``hydra.searchpath`` is given: the package's search-path plugin (``hydra_plugins/``) must add
the SAFS configs by itself, as it does for ``python -m carps.run``.
"""

from __future__ import annotations

from typing import Any


def compose(*overrides: str) -> Any:
    """CARP-S's global config (``carps.configs``, ``base``) with the given overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="carps.configs", version_base=None):
        return hydra_compose(config_name="base", overrides=list(overrides))
