"""The state layer: the only place that knows the store.

layout (every key), records (every binary record), batch (one batch of
decisions: read by keys, apply mutations), campaigns and recalls (admin writes
and reads). LMDB is the embedded store; nothing outside this package builds a key
or opens a transaction for the decision state.
"""
