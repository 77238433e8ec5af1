"""Numbers from embeddings: metrics (pure functions), the results table and its provenance, 2D
corruptions, brute-force references. Imports core, data and models.
"""
