"""Bounce parsing: turn delivery reports, complaints and auto-replies into BounceReports."""
