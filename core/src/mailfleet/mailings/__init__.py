"""Mailings: templates, recipients and the letters built from them, validated and streamed
into the store.
"""
