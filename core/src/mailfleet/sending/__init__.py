"""Sending: the fleet of servers, sender policy, quota windows, the dispatcher that claims
letters under each server's quota and sends them, and what a failure means for the letter,
the server and the mailing.
"""
