"""A collection on disk: the SQLite catalog, the float16 vector files, the manifest, the lock."""
