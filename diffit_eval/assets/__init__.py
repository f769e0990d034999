"""Assets: where downloaded files live and how they arrive (the first stop on the data path).

- :mod:`diffit_eval.assets.cache` the cache folder, resumable verified downloads, atomic writes;
- :mod:`diffit_eval.assets.checkpoints` released DiffiT checkpoints by name -> a local path;
- :mod:`diffit_eval.assets.vae` the Stable Diffusion VAE, fetched from the hub when it answers;
- :mod:`diffit_eval.assets.weights` every named download (`diffit-eval weights fetch NAME`).

`diffit` itself reads local files only; everything that touches the network is here.
"""
