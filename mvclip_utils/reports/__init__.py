"""What notebooks show: plots, figure files and their index, method pages, the summary's figures, the
view explorer. Imports every layer below; only pipeline, sweep and cli sit above it.
"""
