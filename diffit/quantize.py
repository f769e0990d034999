"""The one float -> uint8 quantisation of generated images (docs/PROTOCOL.md, "Pixels").

The rule moves FID measurably (docs/PROTOCOL.md, "Known traps"), so it is always named by the caller's preset.
"""

from __future__ import annotations

import torch

# Rule name -> where it comes from.
UINT8_RULES = {
    "truncate": "DiffiT release: uint8(clamp((x + 1) * 127.5, 0, 255)), i.e. floor of (x + 1) * 127.5",
    "round": "DiT sample.py: uint8(clamp(127.5 * x + 128, 0, 255)), i.e. (x + 1) * 127.5 rounded half up",
}


def to_uint8(x: torch.Tensor, rule: str = "truncate") -> torch.Tensor:
    """NCHW float images in [-1, 1] -> uint8 NHWC torch tensor on the same device.

    Computed in float32 (float64 if x is float64); the float -> uint8 cast truncates toward zero,
    which after the clamp to [0, 255] is a floor.
    """
    if rule not in UINT8_RULES:
        raise ValueError(f"unknown uint8 rule {rule!r}; choose from {sorted(UINT8_RULES)}")
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    if rule == "truncate":
        y = torch.clamp((x + 1) * 127.5, 0, 255)
    else:
        y = torch.clamp(127.5 * x + 128.0, 0, 255)
    return y.permute(0, 2, 3, 1).to(torch.uint8)
