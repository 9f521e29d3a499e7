"""safs-smac's Hydra search-path plugin: ``pkg://safs_smac/configs`` on every Hydra app's path.

Hydra imports every module under the ``hydra_plugins`` namespace package at start-up and registers
the :class:`~hydra.plugins.search_path_plugin.SearchPathPlugin` subclasses it finds. With safs-smac
installed, ``python -m carps.run +task/SAFS=<task> +optimizer/safs=lahc ...`` therefore finds the
SAFS tasks and optimizers without ``hydra.searchpath`` (which CARP-S's logged "Runcommand" drops).

``hydra_plugins`` must stay a namespace package (no ``__init__.py`` in ``hydra_plugins/``): other
distributions (hydra-colorlog, hydra-submitit-launcher, ...) install their plugins into it too.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

__all__ = ["SafsSmacSearchPathPlugin"]

#: Where the CARP-S task and optimizer configs live (an importable package, see its __init__).
CONFIG_PACKAGE = "pkg://safs_smac/configs"


class SafsSmacSearchPathPlugin(SearchPathPlugin):
    """Appends safs-smac's CARP-S configs (``task/SAFS``, ``optimizer/safs``) to the search path.

    Appended, not prepended: the application's own configs and an explicit ``hydra.searchpath``
    keep precedence, and the ``SAFS``/``safs`` groups collide with no CARP-S group.
    """

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        """Add the package's configs once, after everything the application put there."""
        search_path.append(provider="safs-smac", path=CONFIG_PACKAGE)
