"""Draw and edit masks in the canonical semlab palette, in a notebook.

A mask painted here says *what structure to generate*: a label map (H, W) of the
canonical ids (0 background/black, 1 pattern/white, 2 hole/blue, 3 defect/red; see
:mod:`semlab.labels`) that a trained generator later turns into an SEM image.

In a notebook::

    from semlab.painter import MaskPainter
    p = MaskPainter(shape=(256, 256))   # or MaskPainter("masks/0001.png", image=sem)
    p                                   # the cell output is the painter widget

    ... draw ...

    p.mask                              # uint8 (H, W) label map (a copy)

The package has two parts, and the dependency goes one way only (widget -> document):

- :mod:`semlab.painter.document`: :class:`MaskDocument`, the mask model in plain
  numpy (rectangles, polygons, brush strokes, flood fill, grid snapping, undo/redo
  and transactions, load/save of indexed PNGs) and :func:`resolve_label`. It needs
  no widget library and can be scripted on its own::

      doc = MaskDocument(shape=(128, 128), grid=8)
      doc.rect(0, 0, 128, 64, "pattern")
      doc.save("masks/my_mask.png")

- :mod:`semlab.painter.widget`: :class:`MaskPainter`, the ipycanvas + ipywidgets view
  (tools, mouse and key handling, layered drawing, status line), :func:`paint`,
  :func:`mask_rgba` and :data:`TOOLS`. It edits only through a ``MaskDocument``;
  ipywidgets and ipycanvas are imported when a painter is made.

Everything public is re-exported here: ``from semlab.painter import MaskPainter,
MaskDocument, paint, resolve_label, mask_rgba, TOOLS``.
"""

from __future__ import annotations

from semlab.painter.document import MaskDocument, resolve_label
from semlab.painter.widget import TOOLS, MaskPainter, mask_rgba, paint

__all__ = ["MaskDocument", "MaskPainter", "paint", "resolve_label", "mask_rgba", "TOOLS"]
