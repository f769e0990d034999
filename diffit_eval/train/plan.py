"""Planning a training run (rank 0): options -> configuration -> checked data -> run folder and manifest.

Nothing here touches a file, so `train --dry-run` stops after :func:`plan_training`; the loop
(:mod:`diffit_eval.train.loop`) claims the folder and trains.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from diffit_eval.errors import UserError
from diffit_eval.train import config as cfg
from diffit_eval.train import data as trdata
from diffit_eval.train import state as st


@dataclass
class TrainPlan:
    """A resolved TrainConfig plus its run folder: what every process needs (picklable)."""

    config: dict
    run_dir: Path
    resume_from: Path | None
    batch_gpu: int | None
    compile: bool
    metrics_kimg: float | None
    manifest: dict = field(default_factory=dict)


_FLAGS = {"snapshot_ticks": "--snap", "state_ticks": "--dump"}  # options whose flag is EDM's name, not the field's


def _command(config: cfg.TrainConfig, run_dir: Path) -> str:
    args = ["diffit-eval", "train"]
    for key, value in config.given().items():
        flag = _FLAGS.get(key, "--" + key.replace("_", "-"))
        if value is True:
            args.append(flag)
        elif isinstance(value, (tuple, list)):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return shlex.join(args + ["--out", str(run_dir)])


def plan_training(config: cfg.TrainConfig, world_size: int = 1) -> TrainPlan:
    """Resolve everything a run needs and check the data; touches no file (dry runs stop here)."""
    from diffit_eval.provenance import now_iso, package_versions

    if config.resume is not None:
        resume_dir = Path(config.resume)
        if config.out is not None and Path(config.out).resolve() != resume_dir.resolve():
            raise UserError(f"--resume {config.resume} and --out {config.out} name different folders; pass one")
        if not (resume_dir / st.MANIFEST).is_file():
            raise UserError(f"--resume {config.resume}: not a training run folder (no {st.MANIFEST})")
        old = st.read_manifest(resume_dir)
        # Options not repeated on the command line are the run's own.
        for key, value in old.get("options", {}).items():
            if hasattr(config, key) and getattr(config, key) in (None, False):
                setattr(config, key, tuple(value) if key == "adam_betas" else value)
        run_dir = resume_dir
    c = cfg.resolve(config)
    cfg.split_batch(c["batch"], config.batch_gpu, world_size)  # before the data is opened
    if config.resume is None:
        run_dir = Path(config.out) if config.out is not None else st.default_run_dir(c["preset"])
    c.update(trdata.describe_data(config.data, c["resolution"]))
    if c["num_classes"]:
        trdata.check_labels(config.data, c["resolution"], c["num_classes"])
    manifest = {
        "format": cfg.FORMAT,
        "preset": c["preset"],
        "config": c,
        "options": config.given(),
        "command": _command(config, run_dir),
        "versions": package_versions(),
        "created": now_iso(),
        "sessions": [],
    }
    return TrainPlan(
        config=c,
        run_dir=run_dir,
        resume_from=None,
        batch_gpu=config.batch_gpu,
        compile=config.compile,
        metrics_kimg=config.metrics_kimg,
        manifest=manifest,
    )
