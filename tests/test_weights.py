"""Issue 10: `diffit-eval weights fetch NAME` for every name it lists; offline, one line with URL and flag."""

from __future__ import annotations

import subprocess
from pathlib import Path

import helpers
import pytest
from helpers import offline_env

from diffit_eval.assets.weights import registry

REPO = Path(__file__).resolve().parents[1]
NAMES = ["inception", "dinov2-vitl14", "diffit-256", "diffit-512", "sd-vae-ft-ema", "sd-vae-ft-mse"]


def run(*args: str, env: dict, process: bool = False) -> subprocess.CompletedProcess:
    """`diffit-eval ARGS` in-process, or as a real process where the hub's settings matter: the
    Hugging Face library reads HF_HOME and HF_HUB_OFFLINE once, when it is first imported."""
    return helpers.run_process(*args, env=env, cwd=REPO) if process else helpers.cli(*args, env=env, cwd=REPO)


def test_registry_lists_every_released_asset():
    assert list(registry()) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_fetch_offline_is_one_line_with_url_and_flag(name, tmp_path):
    w = registry()[name]
    r = run("weights", "fetch", name, env=offline_env(tmp_path), process=name.startswith("sd-vae"))
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
