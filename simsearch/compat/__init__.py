"""Compatibility facades for code written against other libraries (see :mod:`.datasketch`)."""
