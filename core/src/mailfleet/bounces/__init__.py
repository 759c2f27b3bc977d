"""Bounces: turn delivery reports, complaints and auto-replies into BounceReports, and act on
them (match the letter, mark it, suppress dead addresses, tell the host)."""
