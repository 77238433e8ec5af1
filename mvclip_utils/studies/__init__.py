"""The experiments, one module each (pretraining, the head methods, the shared adapter-tuning loop, OVT,
centroid distillation, probes, decoding, segmentation, the summary). Imports every layer below.
"""
