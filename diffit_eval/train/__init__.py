"""`diffit-eval train`: EDM's training recipe for the image-space DiffiT (appendix I.1).

- :mod:`~diffit_eval.train.config`: EDM's defaults, the appendix's per-preset values, resolution;
- :mod:`~diffit_eval.train.data`: the training set in memory and its world-size-free order;
- :mod:`~diffit_eval.train.loop`: the training loop (DDP, accumulation, EMA, ticks, resume);
- :mod:`~diffit_eval.train.state`: the run folder (manifest, snapshots, training states; the lock is
  :mod:`diffit_eval.run_folder`'s);
- :mod:`~diffit_eval.train.stats`: stats.jsonl and loss.png;
- :mod:`~diffit_eval.train.quality`: FID of EMA samples during training.
"""

from diffit_eval.train.config import TrainConfig
from diffit_eval.train.loop import train

__all__ = ["TrainConfig", "train"]
