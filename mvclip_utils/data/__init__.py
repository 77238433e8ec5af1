"""The dataset: procedural objects, the Blender scene (worker side) and render jobs (parent side), the
Objaverse and CIFAR-100 sources, manifests and ViewImages. Imports only core.
"""
