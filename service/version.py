"""The release number, at the bottom of the layers so that the HTTP surface can report it without importing the package's top."""

from __future__ import annotations

__version__ = "0.1.0"
