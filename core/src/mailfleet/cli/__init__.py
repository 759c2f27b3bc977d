"""The ``mailfleet`` command line: a thin layer over :mod:`mailfleet.app` that parses options
and prints tables or JSON; no business rules live here.
"""
