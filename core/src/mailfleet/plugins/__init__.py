"""The plugin host: finding plugins through entry points, the typed facade over their hooks,
what a provider declares about itself, and the core's own generic plugin. Plugin authors
import :mod:`mailfleet.plugin`, never this package.
"""
