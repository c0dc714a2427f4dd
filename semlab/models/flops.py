"""FLOP counting with ``torch.utils.flop_counter.FlopCounterMode``.

Used by the training benchmark to turn step times into GFLOP/s. Conventions are
PyTorch's: a multiply-add counts as 2 FLOPs (an ``nn.Linear(i, o)`` on a batch of
``b`` is ``2 * b * i * o``), only matmul/convolution-like ops are counted (bias
adds, norms and activations are not), and a backward pass is counted when `fn`
runs one (roughly twice the forward).
"""

from __future__ import annotations

from typing import Any, Callable

from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops"]


def count_flops(fn: Callable[..., Any], *args, **kwargs) -> int:
    """Total FLOPs of one call ``fn(*args, **kwargs)`` (the call is really executed).

    `fn` may be a module or any function, e.g. ``lambda: loss_fn(G(x)).backward()``
    to count a forward and backward step.
    """
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())
