"""Printed output at the terminal's width (issue 25): the console helper, `--help` and every table
at COLUMNS=80, and the options several commands share, one help text each.

Every command runs in-process through the console script's entry point (`helpers.cli`), its stdout
a pipe: $COLUMNS is what a terminal would have set.
"""

from __future__ import annotations

import io
import json
import re

import helpers
import numpy as np
import pytest
from conftest import synthetic_images

COLUMNS80 = {"COLUMNS": "80", "NO_COLOR": "1"}
BOX = re.compile(r"[│┃╭╮╰╯─━┏┓┗┛┡┩┠┨┯┷┳┻╇╋]")


def commands() -> dict[tuple[str, ...], object]:
    """Every click command of the app by its path, `()` the root, groups included."""
    import typer

    from diffit_eval.cli import app

    out: dict[tuple[str, ...], object] = {}

    def walk(cmd, path: tuple[str, ...]) -> None:
        out[path] = cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return out


def option_helps() -> dict[str, dict[str, str]]:
    """flag -> {command path: its help text}, over every leaf command."""
    helps: dict[str, dict[str, str]] = {}
    for path, cmd in commands().items():
        if getattr(cmd, "commands", None):
            continue
        for p in cmd.params:
            for flag in getattr(p, "opts", ()):
                if flag.startswith("--") and getattr(p, "help", None) is not None:
                    helps.setdefault(flag, {})[" ".join(path)] = p.help
    return helps


def fits(text: str, columns: int = 80) -> None:
    long = [line for line in text.splitlines() if len(line) > columns]
    assert not long, f"{len(long)} lines over {columns} columns, e.g. {long[0]!r}"
    assert "…" not in text, "a value was cut to an ellipsis"


def one_word_runs(text: str) -> list[str]:
    """Two consecutive indented lines holding one word each: a description column squeezed to a
    word a line (box characters of a rich panel removed first)."""
    found, previous = [], False
    for line in text.splitlines():
        plain = BOX.sub(" ", line).rstrip()
        lonely = len(plain) - len(plain.lstrip()) >= 10 and len(plain.split()) == 1
        if lonely and previous:
            found.append(plain.strip())
        previous = lonely
    return found


# --- the console helper -------------------------------------------------------------------------


def test_width_is_columns_then_the_terminal_then_the_piped_width(monkeypatch):
    import fcntl
    import os
    import pty
    import struct
    import termios

    from diffit_eval import console as c

    monkeypatch.setenv("COLUMNS", "93")
    assert c.width(io.StringIO()) == 93 and c.console().width == 93
    for bad in ("", "abc", "0", "-5"):  # not a width: ignored
        monkeypatch.setenv("COLUMNS", bad)
        assert c.width(io.StringIO()) == c.PIPED_WIDTH
    monkeypatch.delenv("COLUMNS")
    assert c.width(io.StringIO()) == c.PIPED_WIDTH == 200  # piped: the documented width for logs
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 57, 0, 0))
        with os.fdopen(os.dup(slave), "w") as tty:
            assert c.width(tty) == 57  # a terminal: its own width
            monkeypatch.setenv("COLUMNS", "70")
            assert c.width(tty) == 70  # $COLUMNS wins over the terminal
    finally:
        os.close(master)
        os.close(slave)


def test_console_reads_the_width_when_it_prints(monkeypatch):
    """One Console made early (progress.stderr_console is made at import) follows $COLUMNS and the
    stream current at print time; `columns` fixes it; help pages stop at HELP_WIDTH."""
    import contextlib

    from diffit_eval import console as c

    monkeypatch.setenv("COLUMNS", "66")
    made = c.console()
    monkeypatch.setenv("COLUMNS", "81")
    assert made.width == 81 and c.console(columns=50).width == 50
    monkeypatch.delenv("COLUMNS")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        made.print("x" * 200)
    assert max(len(line) for line in out.getvalue().splitlines()) == c.PIPED_WIDTH
    monkeypatch.setenv("COLUMNS", "300")
    assert c.help_width() == c.HELP_WIDTH
    monkeypatch.setenv("COLUMNS", "80")
    assert c.help_width() == 80


# --- --help at 80 columns -----------------------------------------------------------------------


def test_every_help_page_is_readable_at_80_columns():
    paths = list(commands())
    assert len(paths) >= 17, paths  # root, 10 commands, ref's 4, weights' 2
    for path in paths:
        r = helpers.cli(*path, "--help", env=COLUMNS80)
        assert r.returncode == 0, (path, r.stderr)
        assert "Usage: diffit-eval" in r.stdout, path
        fits(r.stdout)
        assert not one_word_runs(r.stdout), (path, one_word_runs(r.stdout)[:5])


def test_root_help_lists_every_command_with_a_whole_short_help():
    r = helpers.cli("--help", env=COLUMNS80)
    listed = r.stdout.split("Commands:")[1].splitlines()[1:]
    assert len(listed) == len(commands()[()].commands), listed  # one line each
    for line in listed:
        assert not line.rstrip().endswith("..."), line  # click cut a long help to fit one line


# --- tables at 80 columns -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, values",
    [
        (["table"], ["DiT-XL/2-G", "LDM-4-G", "appendix-table-s1"]),
        (["table", "--dataset", "imagenet", "--all-sources"], ["RQ-Transformer", "StyleGAN-XL"]),
        (["models"], ["561,035,232", "562,382,816", "cifar10-tiny", "digits-cond"]),
        (["ref", "list"], ["cifar10-cleanfid-legacy", "imagenet512", "legacy-tf"]),
        (["regress", "--list"], ["golden-cpu", "3.94256", "adm-ref-256"]),
    ],
)
def test_tables_fit_80_columns(args, values):
    r = helpers.cli(*args, env=COLUMNS80)
    assert r.returncode == 0, r.stderr
    fits(r.stdout)
    for value in values:
        assert value in r.stdout, value


def test_regress_checks_fit_80_columns_and_the_verdict_wraps(tmp_path):
    from test_table_regress import metrics_json

    m = metrics_json(
        tmp_path / "m.json", precision=None, recall=None, unavailable={"pr": "reference has no images (arr_0)"}
    )
    r = helpers.cli("regress", "--suite", "adm-ref-256", "--measured", m, env=COLUMNS80)
    assert r.returncode == 1
    fits(r.stdout)
    for word in ("3.94256", "MISSING", "reference", "images", "(arr_0))"):
        assert word in r.stdout, word


@pytest.fixture(scope="module")
def digits_metrics(tmp_path_factory):
    """`metrics` on 40 + 40 synthetic 16x16 images with the shipped digits network (seconds)."""
    d = tmp_path_factory.mktemp("digits-metrics")
    np.savez(d / "a.npz", arr_0=synthetic_images(40, 1, res=16))
    np.savez(d / "b.npz", arr_0=synthetic_images(40, 2, res=16, shift=0.5))
    args = ["metrics", d / "a.npz", "--ref", d / "b.npz", "--network", "digits", "--metrics", "fid,is,pr,kid"]
    args += ["--bootstrap", "5", "-q", "--json", d / "m.json"]
    narrow = helpers.cli(*args, env=COLUMNS80)
    # the ADM set, no intervals: a row that fits a log's width
    piped = helpers.cli(*args[:6], "-q", env={"COLUMNS": None, "NO_COLOR": "1"})
    assert narrow.returncode == piped.returncode == 0, narrow.stderr + piped.stderr
    return narrow.stdout, piped.stdout, json.loads((d / "m.json").read_text())


def test_metrics_fits_80_columns_one_value_a_line(digits_metrics):
    from diffit_eval.cli.metrics import fmt

    narrow, piped, record = digits_metrics
    fits(narrow)
    fid = f"{fmt(record['fid'], 4)} [{fmt(record['fid_ci'][0], 4)}, {fmt(record['fid_ci'][1], 4)}]"
    for text in (fid, fmt(record["kid"], 5), "digits-mlp", "block-mean-8x8"):
        assert text in narrow, text  # whole, on one line, never folded or cut
    assert re.search(r"FID\s.*" + re.escape(fid), narrow)  # stacked: the name, then its value
    # Off a terminal (a log): one row, at the piped width.
    fits(piped, 200)
    header = next(line for line in piped.splitlines() if "sFID" in line)
    assert "FID" in header and "resize" in header and fmt(record["fid"], 4) in piped


def test_bootstrap_wording_matches_the_json(digits_metrics):
    """The JSON's `interval` rule, the line under the table and the --bootstrap help say one thing."""
    narrow, _, record = digits_metrics
    assert record["bootstrap"]["interval"] == "percentile, centred on the reported value, clipped to the metric's range"
    assert "centred on the value" in " ".join(narrow.split())
    for path in ("metrics", "sweep"):
        assert "centred on the" in option_helps()["--bootstrap"][path], path


# --- one option table ---------------------------------------------------------------------------

# Flags that mean one thing wherever they appear: one help text each.
SHARED_FLAGS = (
    "--device",
    "--inception-weights",
    "--dinov2-weights",
    "--network",
    "--resize",
    "--metrics",
    "--no-download",
    "--model",
    "--vae",
    "--steps",
    "--cfg-scale",
    "--class-labels",
    "--seeds",
)
# ... except where the command means something else by it: `table --metrics` picks columns, `demo
# --steps` is the demo's own EDM Heun count (default 18, whatever the preset).
OTHER_MEANING = {("--metrics", "table"), ("--steps", "demo")}


def test_shared_options_have_one_help_text_each():
    helps = {
        flag: {path: text for path, text in by_path.items() if (flag, path) not in OTHER_MEANING}
        for flag, by_path in option_helps().items()
    }
    for flag in SHARED_FLAGS:
        assert len(helps[flag]) >= 2, flag
        assert len(set(helps[flag].values())) == 1, (flag, helps[flag])
    from diffit_eval.cli.options import SHARED

    assert set(SHARED) == set(SHARED_FLAGS)
    for flag, text in SHARED.items():
        assert set(helps[flag].values()) == {text}, flag


def test_resize_defaults_to_the_protocol_constant():
    from diffit_eval.protocol import DEFAULT_RESIZE

    for path, cmd in commands().items():
        for p in getattr(cmd, "params", ()):
            if "--resize" in getattr(p, "opts", ()):
                assert p.default == DEFAULT_RESIZE, path


def test_metric_lists_in_help_name_every_metric():
    """`table --metrics` takes every key of ALL_METRIC_KEYS (kid, fd_dinov2 ...); `metrics --metrics`
    every group of METRIC_GROUPS: their help says so."""
    from diffit_eval.protocol import ALL_METRIC_KEYS, METRIC_GROUPS

    helps = option_helps()["--metrics"]
    for key in ALL_METRIC_KEYS:
        assert re.search(rf"\b{key}\b", helps["table"]), key
    for key in METRIC_GROUPS:
        assert re.search(rf"\b{key}\b", helps["metrics"]), key


def test_update_golden_help_matches_its_refusal_of_measured(tmp_path):
    text = option_helps()["--update-golden"]["regress"]
    assert "not with --measured" in text and "read --measured" not in text
    r = helpers.cli("regress", "--suite", "golden-cpu", "--update-golden", "--measured", tmp_path / "m.json")
    assert r.returncode == 2 and "drop --measured" in r.stderr


def test_models_prints_the_networks_own_parameter_counts():
    from diffit.models import MODEL_PRESETS, parameter_count

    r = helpers.cli("models", env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    for name in MODEL_PRESETS:
        row = next(line for line in r.stdout.splitlines() if f" {name} " in line)
        assert f"{parameter_count(name)[0]:,}" in row, (name, row)


def test_weights_fetch_help_names_every_weight():
    from diffit_eval.assets.weights import registry

    text = commands()[("weights", "fetch")].params[0].help
    for name in registry():
        assert re.search(rf"(^|\| ){re.escape(name)}( \||$)", text), name


def test_console_is_a_bottom_module_by_contract(tmp_path):
    """The console helper imports no layer of the data path: a contract in pyproject.toml breaks
    when it does (the copied tree passes first)."""
    from test_layout import LINT_IMPORTS, _copy_tree, _lint_imports

    if LINT_IMPORTS is None:
        pytest.skip("import-linter is in the test extra: pip install -e '.[test]'")
    root = _copy_tree(tmp_path)
    assert _lint_imports(root).returncode == 0
    path = root / "diffit_eval" / "console.py"
    path.write_text(path.read_text() + "\nimport diffit_eval.features.extract  # deliberately reversed\n")
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "The console helper imports no layer of the data path BROKEN" in result.stdout, result.stdout[-3000:]
