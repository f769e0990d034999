"""The layout is enforced, not only described: import layers (import-linter), lint (ruff), the
architecture page against the tree, protocol citations against docs/PROTOCOL.md."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports")
RUFF = shutil.which("ruff")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH first: the editable install's finder comes after the path, so a copy in `cwd` wins.
    env = {"PYTHONPATH": str(cwd), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is in the test extra: pip install -e '.[test]'")
def test_import_layers_hold():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout and result.stdout.count("KEPT") >= 5


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for package in ("diffit", "diffit_eval"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is in the test extra: pip install -e '.[test]'")
@pytest.mark.parametrize(
    "module, line, contract",
    [
        # the cache (assets, the bottom layer) reaching up to the table (the top of the data path)
        ("diffit_eval/assets/cache.py", "import diffit_eval.report.table", "diffit_eval follows the data path"),
        # the sampler reaching forward into the feature network
        ("diffit_eval/generate/sample.py", "import diffit_eval.features.network", "diffit_eval follows the data path"),
        # the models importing the evaluation package
        ("diffit/vae.py", "import diffit_eval.errors", "diffit stands alone: it never imports diffit_eval"),
        # a metric importing the evaluation stand-ins
        (
            "diffit_eval/features/extract.py",
            "import diffit_eval.testing",
            "Library code never imports the evaluation stand-ins",
        ),
        # the sampler taking diffit's stand-ins past the seam (diffit_eval/standins.py)
        (
            "diffit_eval/generate/sample.py",
            "import diffit.testing",
            "diffit's stand-ins reach diffit_eval through one seam",
        ),
    ],
)
def test_a_reversed_import_breaks_the_contract(tmp_path, module, line, contract):
    root = _copy_tree(tmp_path)
    assert _lint_imports(root).returncode == 0  # the unmodified copy passes
    path = root / module
    path.write_text(path.read_text() + f"\n{line}  # deliberately reversed\n")
    result = _lint_imports(root)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout, result.stdout[-3000:]


def _import_cycles(graph) -> list[list[str]]:
    """Each module that imports a module which leads back to it, as the shortest such circle.

    grimp reads every import statement, function-level (lazy) ones and `TYPE_CHECKING` ones
    included, so a circle hidden inside a function still counts.
    """
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append([module, *back])
    return cycles


def test_no_import_cycle():
    """No module of diffit or diffit_eval reaches itself through its imports: each idea has one
    home below its users (issue 25: features/network.py and features/digits.py imported each other)."""
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter: pip install -e '.[test]'")
    graph = grimp.build_graph("diffit", "diffit_eval", cache_dir=None)
    assert len(graph.modules) >= 90  # both packages, every module
    assert _import_cycles(graph) == []


def test_every_network_name_has_a_factory_and_its_widths():
    """`--network` names (diffit_eval.protocol) and the registry's factories are one set, and each
    network class declares its own row widths (diffit_eval/features/base.py)."""
    from diffit_eval.features.digits import DigitFeatures
    from diffit_eval.features.network import InceptionFeatures
    from diffit_eval.features.registry import NETWORK_FACTORIES
    from diffit_eval.protocol import FEATURE_NETWORKS, LOGITS_DIM, POOL_DIM, SPATIAL_DIM

    assert NETWORK_FACTORIES.keys() == FEATURE_NETWORKS.keys()
    widths = {cls: (cls.pool_dim, cls.spatial_dim, cls.logits_dim) for cls in (InceptionFeatures, DigitFeatures)}
    assert widths == {InceptionFeatures: (POOL_DIM, SPATIAL_DIM, LOGITS_DIM), DigitFeatures: (64, None, 10)}


@pytest.mark.skipif(RUFF is None, reason="ruff is in the test extra: pip install -e '.[test]'")
def test_ruff_check_is_clean():
    result = subprocess.run(
        [RUFF, "check", "--no-cache", "diffit", "diffit_eval", "tests", "benchmarks"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:]


@pytest.mark.skipif(RUFF is None, reason="ruff is in the test extra: pip install -e '.[test]'")
def test_ruff_format_is_clean():
    result = subprocess.run(
        [RUFF, "format", "--check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:]


MAX_MODULE_LINES = 450  # "small modules, each one idea": a module past this is split, not grown


def test_no_module_outgrows_one_idea():
    sizes = {
        str(f.relative_to(REPO)): len(f.read_text().splitlines())
        for pkg in ("diffit", "diffit_eval")
        for f in (REPO / pkg).rglob("*.py")
    }
    assert {f: n for f, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_diffit_imports_with_diffit_eval_absent():
    code = "import sys; sys.modules['diffit_eval'] = None; import diffit; diffit.create_model('cifar10-tiny')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_mock_in_library_code():
    hits = [
        f"{p.relative_to(REPO)}:{i}"
        for package in ("diffit", "diffit_eval")
        for p in (REPO / package).rglob("*.py")
        for i, text in enumerate(p.read_text().splitlines(), 1)
        if "unittest.mock" in text or "from unittest import" in text
    ]
    assert hits == []


def _architecture_paths() -> list[str]:
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    return sorted(set(re.findall(r"`((?:diffit|diffit_eval)/[\w/]*\w(?:\.py)?/?)`", text)))


def test_architecture_names_only_modules_that_exist():
    paths = _architecture_paths()
    assert len(paths) >= 40, paths  # the page draws the whole layout, module by module
    missing = [p for p in paths if not (REPO / p).exists()]
    assert missing == [], f"docs/ARCHITECTURE.md names modules that do not exist: {missing}"


def test_architecture_draws_every_module():
    named = set(_architecture_paths())
    modules = [
        str(p.relative_to(REPO))
        for package in ("diffit", "diffit_eval")
        for p in (REPO / package).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "_shipped" not in p.parts
    ]
    undrawn = [m for m in sorted(modules) if m not in named]
    assert undrawn == [], f"modules missing from docs/ARCHITECTURE.md: {undrawn}"


def test_protocol_citations_name_sections_that_exist():
    headings = {m.strip() for m in re.findall(r"^#+ (.+)$", (REPO / "docs" / "PROTOCOL.md").read_text(), re.M)}
    cited: dict[str, list[str]] = {}
    for package in ("diffit", "diffit_eval", "tests", "benchmarks"):
        for p in (REPO / package).rglob("*.py"):
            for section in re.findall(r'PROTOCOL\.md, "([^"]+)"', p.read_text()):
                cited.setdefault(section, []).append(str(p.relative_to(REPO)))
    assert len(cited) >= 8
    unknown = {s: files for s, files in cited.items() if s not in headings}
    assert unknown == {}, f"citations of sections docs/PROTOCOL.md does not have: {unknown}"


def test_no_comment_cites_a_file_outside_the_repository():
    hits = [
        f"{p.relative_to(REPO)}:{i}"
        for package in ("diffit", "diffit_eval", "tests", "benchmarks")
        for p in (REPO / package).rglob("*.py")
        for i, text in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"\bSPEC(\.md)?\b", text) and p.name != "test_layout.py"
    ]
    assert hits == []
