"""A training run on disk: manifest, lock, network snapshots and training states.

A run folder holds (EDM's habits, with safetensors for the weights users load)

    manifest.json                          the resolved configuration (its COMPARED part is checked on resume)
    .lock                                  flock held by rank 0 while a run writes here
    stats.jsonl                            one line per tick: kimg, loss, lr, img/s, memory (and FID when measured)
    loss.png                               loss (and FID) against kimg
    network-snapshot-KIMG.safetensors      EMA weights in the preset's layout: `diffit-eval sample --ckpt` loads it
    network-snapshot-latest.safetensors    a copy of the newest snapshot
    training-state-KIMG.pt                 net, EMA, optimizer, counters and RNG states, for --resume

KIMG is the number of training images seen, in thousands, rounded down, six digits. Every file is
written under a temporary name and renamed, so a kill -9 leaves either the previous file or the
new one complete, and dot-files ending in `.tmp`, which the next run removes. The manifest, the
lock and that cleanup are every run folder's (:mod:`diffit_eval.run_folder`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from diffit_eval import run_folder
from diffit_eval.assets.cache import atomic_path, write_json_atomic
from diffit_eval.errors import UserError
from diffit_eval.run_folder import MANIFEST, RUNS_ROOT, RunLock, config_differences, remove_stale_temporaries
from diffit_eval.train.config import COMPARED, FORMAT

STATS = "stats.jsonl"
PLOT = "loss.png"
LATEST = "network-snapshot-latest.safetensors"
_STATE_RE = re.compile(r"^training-state-(\d{6,})\.pt$")
# The augmentation-label embedding only ever multiplies zeros at sampling (non-leaky augmentation),
# so snapshots leave it out and load into the preset's plain network.
SAMPLING_DROPPED = ("augment_embedder.",)


def snapshot_name(nimg: int) -> str:
    return f"network-snapshot-{nimg // 1000:06d}.safetensors"


def state_name(nimg: int) -> str:
    return f"training-state-{nimg // 1000:06d}.pt"


def default_run_dir(preset: str) -> Path:
    return RUNS_ROOT / f"train-{preset}"


# ----------------------------------------------------------------------------
# Manifest and lock.


def read_manifest(run_dir: Path) -> dict:
    return run_folder.read_manifest(run_dir, FORMAT, "training run", ())


def compared(config: dict) -> dict:
    return {k: (list(config[k]) if isinstance(config.get(k), tuple) else config.get(k)) for k in COMPARED}


def claim(run_dir: Path, manifest: dict, resume: bool) -> tuple[RunLock, dict]:
    """Lock the folder and check it: a new run needs an empty folder, --resume one with the same configuration.

    Returns the held lock and the manifest to keep writing (the old one, updated, when resuming).
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} is a file; pass a folder for the training run")
    try:
        lock = RunLock(run_dir).acquire()
    except UserError:
        raise UserError(
            f"{run_dir} is being written by another `diffit-eval train` run; "
            "wait for it to finish or pass another --out"
        ) from None
    try:
        path = run_dir / MANIFEST
        if path.is_file():
            old = read_manifest(run_dir)
            diff = config_differences(compared(old["config"]), compared(manifest["config"]))
            if diff:
                raise UserError(
                    f"{run_dir} holds a training run with another configuration ({'; '.join(diff)}); "
                    "pass another --out, or delete the folder to start over"
                )
            if not resume:
                raise UserError(
                    f"{run_dir} already holds a training run; pass --resume {run_dir} to continue it, or another --out"
                )
            manifest = {
                **old,
                "config": manifest["config"],
                "command": manifest["command"],
                "versions": manifest["versions"],
            }
        elif resume:
            raise UserError(f"--resume {run_dir}: not a training run folder (no {MANIFEST})")
        elif any(p.name != run_folder.LOCK for p in run_dir.iterdir()):
            raise UserError(f"{run_dir} exists and is not a training run folder (no {MANIFEST}); pass another --out")
        remove_stale_temporaries(run_dir)
        write_json_atomic(path, manifest)
    except BaseException:
        lock.release()
        raise
    return lock, manifest


# ----------------------------------------------------------------------------
# Snapshots: EMA weights for sampling.


def sampling_state_dict(ema: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The EMA state_dict as the preset's network holds it: CPU, contiguous, no augmentation embedding."""
    return {k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items() if not k.startswith(SAMPLING_DROPPED)}


def save_snapshot(run_dir: Path, ema: torch.nn.Module, nimg: int, metadata: dict) -> Path:
    """network-snapshot-KIMG.safetensors and network-snapshot-latest.safetensors, each written atomically."""
    from safetensors.torch import save_file

    sd = sampling_state_dict(ema)
    meta = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in {**metadata, "nimg": nimg}.items()}
    final = run_dir / snapshot_name(nimg)
    for path in (final, run_dir / LATEST):
        with atomic_path(path) as tmp:
            save_file(sd, str(tmp), metadata=meta)
    return final


# ----------------------------------------------------------------------------
# Training states: everything --resume needs.


def save_state(run_dir: Path, state: dict, nimg: int) -> Path:
    final = run_dir / state_name(nimg)
    with atomic_path(final) as tmp:
        torch.save(state, tmp)
    return final


def latest_state(run_dir: Path) -> Path | None:
    """The training state with the most images seen (by file name), or None."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("training-state-*.pt") if (m := _STATE_RE.match(p.name))]
    return max(found)[1] if found else None


def load_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(
            f"cannot read training state {path} ({type(e).__name__}: {e}); delete it to resume from the one before"
        ) from None


def transfer_weights(net: torch.nn.Module, path: Path) -> list[str]:
    """EDM's --transfer: copy every tensor of the snapshot whose name and shape the network shares.

    Tensors the snapshot lacks (a class embedding added to an unconditional model) keep their
    fresh initialisation and are returned; a shared name with another shape is an error.
    """
    from diffit.checkpoint import read_state_dict

    src = read_state_dict(path)
    own = net.state_dict()
    wrong = [k for k, v in src.items() if k in own and own[k].shape != v.shape]
    if wrong:
        raise UserError(
            f"--transfer {path}: {wrong[0]} has shape {tuple(src[wrong[0]].shape)}, the network "
            f"{tuple(own[wrong[0]].shape)}; transfer from a snapshot of the same architecture"
        )
    missing = [k for k in own if k not in src]
    net.load_state_dict({**own, **{k: v for k, v in src.items() if k in own}})
    return missing
