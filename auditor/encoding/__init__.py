"""Encoding: read and decode each file once, hash it, embed it, and cache everything by content."""
