"""What embeds: the backbone (open_clip or the tiny CLIP), embeddings, heads, losses, adapters, and a
notebook's opened run. Imports core and data.
"""
