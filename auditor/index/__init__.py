"""Indexing: from a folder or a manifest to the records an audit reads (path, split, label, source)."""
