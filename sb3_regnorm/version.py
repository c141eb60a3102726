"""The package version; CHANGELOG.md governs it (a ``.devN`` pre-release of the next version between releases)."""

__version__ = "0.2.0.dev0"
