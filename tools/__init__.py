"""Developer scripts that keep docs/ true to the code and the measurements (not installed).

``python -m tools.figures`` rewrites the figure tables; ``python -m tools.architecture`` rewrites
the module graph; ``make docs`` runs both.
"""
