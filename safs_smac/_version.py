"""The package version, in a module of its own.

Modules that record the version (cache keys, ``run.json``) import it from here instead of from the
package root, so no module imports the package it belongs to. Imports nothing.
"""

__version__ = "0.1.0"
