"""The lowest layer: the config (schema, loading, checks), the run layout that owns every path, progress,
cameras, shards, the training loop and data-parallel ranks. Imports nothing else of mvclip_utils.
"""
