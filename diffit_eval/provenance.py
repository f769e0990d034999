"""What produced a number: package versions, device, time. Written into every JSON result."""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata


def package_versions() -> dict[str, str]:
    """Versions of the packages that can move a metric."""
    out = {}
    for name in ("diffit-eval", "torch", "torchvision", "torch-fidelity", "numpy", "scipy", "diffusers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def device_description(device: str | None = None) -> str:
    import torch

    dev = torch.device(device) if device else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"{dev.type}:{platform.processor() or platform.machine()}"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
