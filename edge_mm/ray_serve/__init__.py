"""edge-mm on Ray Serve (``edge-mm serve --engine ray``): the same routes, tasks and artifacts, with each
model a Ray Serve deployment of its own replicas. Optional: needs requirements/ray.txt; never in the bundle.

Nothing is imported here: ``edge_mm.ray_serve.run`` imports Ray.
"""
