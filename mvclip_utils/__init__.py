"""mvclip: how multi-view consistent are CLIP features, and what makes them more so.

Layers, imports only going down (an import-linter contract in pyproject.toml): core <- data <- models
<- evaluation <- studies <- reports <- lab, pipeline <- sweep <- cli. `mvclip --help` is the front door.
"""
