"""Issue 10: `diffit-eval weights fetch NAME` for every name it lists; offline, one line with URL and flag."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import helpers
import pytest
from helpers import offline_env

from diffit_eval.assets.weights import registry

REPO = Path(__file__).resolve().parents[1]
NAMES = ["inception", "dinov2-vitl14", "diffit-256", "diffit-512", "sd-vae-ft-ema", "sd-vae-ft-mse"]


def run(*args: str, env: dict) -> subprocess.CompletedProcess:
    """`diffit-eval ARGS` in-process (the VAE fetches run in a fresh interpreter: `vae_fetches`)."""
    return helpers.cli(*args, env=env, cwd=REPO)


def test_registry_lists_every_released_asset():
    assert list(registry()) == NAMES


VAES = [n for n in NAMES if n.startswith("sd-vae")]
BOTH_VAES = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from helpers import cli
print(json.dumps({name: [r.returncode, r.stderr] for name in sys.argv[2:] for r in [cli("weights", "fetch", name)]}))
"""


@pytest.fixture(scope="module")
def vae_fetches(tmp_path_factory) -> tuple[dict, Path]:
    """Both VAE fetches in one fresh interpreter that starts offline (the hub reads its settings at
    import; diffusers' import is most of the 6 s such a process costs), each through the CLI's entry point."""
    cache = tmp_path_factory.mktemp("vae-offline")
    r = helpers.run_argv(
        [sys.executable, "-c", BOTH_VAES, Path(__file__).parent, *VAES], env=offline_env(cache), cwd=REPO
    )
    assert r.returncode == 0, r.stderr
    return {
        n: subprocess.CompletedProcess([n], code, "", err) for n, (code, err) in json.loads(r.stdout).items()
    }, cache


@pytest.mark.parametrize("name", NAMES)
def test_fetch_offline_is_one_line_with_url_and_flag(name, tmp_path, request):
    w = registry()[name]
    if name in VAES:
        runs, tmp_path = request.getfixturevalue("vae_fetches")
        r = runs[name]
    else:
        r = run("weights", "fetch", name, env=offline_env(tmp_path))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert w.url in lines[0] and w.alternative.split()[0] in lines[0]
    assert not any(p.suffix in (".part", ".tmp") for p in tmp_path.rglob("*") if p.name.startswith("."))


@pytest.mark.parametrize("name", ["inception", "diffit-256"])
def test_fetch_finds_a_cached_file_without_network(name, tmp_path):
    from diffit.checkpoint import CHECKPOINTS

    rel = (
        Path("weights") / registry()[name].url.rsplit("/", 1)[1]
        if name == "inception"
        else Path("checkpoints") / CHECKPOINTS[name].filename
    )
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_bytes(b"x")
    r = run("weights", "fetch", name, env=offline_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / rel)


def test_unknown_name_lists_the_valid_ones(tmp_path):
    r = run("weights", "fetch", "nope", env=offline_env(tmp_path))
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert "'nope'" in line and all(n in line for n in NAMES)


def test_list_names_urls():
    r = run("weights", "list", env={})
    assert r.returncode == 0 and all(n in r.stdout for n in NAMES) and "huggingface.co/nvidia/DiffiT" in r.stdout
