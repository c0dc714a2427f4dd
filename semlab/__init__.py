"""semlab: a workbench for synthetic SEM images of semiconductor structures.

Importing semlab has no side effects; the sub-packages are imported on demand.
"""

__version__ = "0.1.0"
