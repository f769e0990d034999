"""The feature networks prepared for inference: batch norm folded into its convolution,
channels-last memory, and full fp32 on a GPU (docs/PROTOCOL.md, "Feature network: speed and agreement").

Folding: in eval mode a batch norm is the affine map y = (x - mean) / sqrt(var + eps) * gamma + beta
of each channel, so conv -> BN equals one convolution with weights W * s (s = gamma / sqrt(var + eps),
per output channel) and bias beta - mean * s. The products are formed in float64 and rounded to
float32 once; what changes is the order of float32 roundings inside the network, not the function.
`tests/test_metrics.py` bounds the difference from torch-fidelity's unfolded network (pool_3,
logits and sFID features; FID).

Channels-last: oneDNN's (and cuDNN's) fastest convolutions read NHWC; in NCHW every layer pays a
reorder. Measured by `benchmarks/bench_features.py` on 2 CPU cores: 8.8 -> 15 images/s at 299x299.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@torch.no_grad()
def fold_batch_norm(model: torch.nn.Module) -> int:
    """Fold every `conv` -> `bn` pair (torch-fidelity's `BasicConv2d`) in place; returns how many.

    The block keeps its forward (conv, bn, ReLU): its `conv` gains the bias, its `bn` becomes Identity."""
    folded = 0
    for block in model.modules():
        conv, bn = getattr(block, "conv", None), getattr(block, "bn", None)
        if not (isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d)):
            continue
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        bias = bn.bias.double() - bn.running_mean.double() * scale
        if conv.bias is not None:
            bias = bias + conv.bias.double() * scale
        fused = torch.nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=True,
            padding_mode=conv.padding_mode,
        ).to(conv.weight.device)
        fused.weight.copy_((conv.weight.double() * scale[:, None, None, None]).float())
        fused.bias.copy_(bias.float())
        block.conv, block.bn = fused, torch.nn.Identity()
        folded += 1
    return folded


def prepare_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """eval mode, batch norm folded, parameters channels-last; in place, returned for chaining."""
    model.eval()
    fold_batch_norm(model)
    return model.to(memory_format=torch.channels_last)


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """No TF32 inside: convolutions and matmuls of a feature network in IEEE fp32 on any GPU.

    PyTorch lets cuDNN convolutions use TF32 by default, and sampling in the release's `tf32`
    precision turns it on for matmuls too; features extracted inside such a run would lose 13
    mantissa bits. Restored after (also on CPU, where the flags do nothing)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
