"""Sources of raw documents: feeds over HTTP and local seed files.

Nothing here knows about Beam: fetching produces `RawFetch` records, and the
pure parse functions turn one raw document into `Entry` records.
"""
