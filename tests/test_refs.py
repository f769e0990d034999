"""Issue 5: the reference registry; fetch with verification; build from a dataset; inspect.

Everything runs on small generated images (32x32, tens of them) with stand-in Inception weights,
offline: downloads go to a local HTTP server or to a proxy that refuses connections.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import struct
import sys
import threading
import zipfile
from pathlib import Path

import helpers
import numpy as np
import pytest
import torch
from PIL import Image

from diffit_eval.errors import MissingAssetError, UserError
from diffit_eval.io.preprocess import CROPS, adm_center_crop, edm_center_crop, load_preprocessed
from diffit_eval.io.readers import open_image_set
from diffit_eval.references import build
from diffit_eval.references import registry as refs

REPO = Path(__file__).resolve().parents[1]
PROTOCOL_URLS = {  # docs/PROTOCOL.md, "Reference files"
    "imagenet64": "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/64/VIRTUAL_imagenet64_labeled.npz",
    "imagenet128": "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/128/VIRTUAL_imagenet128_labeled.npz",
    "imagenet256": "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/256/VIRTUAL_imagenet256_labeled.npz",
    "imagenet512": "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/512/VIRTUAL_imagenet512.npz",
    "cifar10": "https://nvlabs-fi-cdn.nvidia.com/edm/fid-refs/cifar10-32x32.npz",
    "ffhq64": "https://nvlabs-fi-cdn.nvidia.com/edm/fid-refs/ffhq-64x64.npz",
    "cifar10-cleanfid-clean": "https://www.cs.cmu.edu/~clean-fid/stats/cifar10_clean_train_32.npz",
    "cifar10-cleanfid-legacy": "https://www.cs.cmu.edu/~clean-fid/stats/cifar10_legacy_tensorflow_train_32.npz",
}
N_IMAGES = 12  # per folder; Inception on CPU is the cost (docs/TESTING.md, "The stand-in's speed")
ARRAYS = ("mu", "sigma", "mu_s", "sigma_s", "arr_0")
# Chunks a multiple of the batch, so the build's batches are those of `metrics --batch-size 4`: CPU
# convolutions may round differently for other batch compositions, and with 12 images in 2048
# dimensions FID magnifies any difference in the null space of the covariance (square roots).
FIXTURE_BUILD = dict(batch_size=4, chunk_size=8, pr_images=7, seed=3, progress=False)


# --------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def weights(standin_weights) -> Path:
    """The session's stand-in Inception weights (tests/conftest.py)."""
    return Path(standin_weights)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A private cache for the whole module: nothing touches the user's."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFIT_EVAL_CACHE", str(path))
        yield path


def write_images(folder: Path, n: int, seed: int, shift: float, sizes=None) -> Path:
    """Smooth random RGB images in two ImageNet-style class folders."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = sizes[i % len(sizes)] if sizes else (32, 32)
        low = rng.normal(120 + shift, 50, (6, 6, 3)).clip(0, 255).astype(np.uint8)
        im = Image.fromarray(low).resize((w, h), Image.Resampling.BILINEAR)
        arr = (np.asarray(im, np.float32) + rng.normal(0, 8, (h, w, 3))).clip(0, 255).astype(np.uint8)
        (folder / f"n0{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(folder / f"n0{i % 2}" / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    return write_images(root / "a", N_IMAGES, seed=0, shift=0), write_images(root / "b", N_IMAGES, seed=1, shift=70)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`diffit-eval ARGS` in-process (tests/helpers.py)."""
    r = helpers.cli(*args)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def built(cache, folders, weights) -> Path:
    """`ref build` of folder a into the cache under the name `mine`."""
    path = build.build_reference(folders[0], name="mine", resolution=32, weights=weights, **FIXTURE_BUILD)
    assert path == cache / "refs" / "mine.npz"
    return path


def arrays_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in ARRAYS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(cache: Path, **extra: str) -> dict:
    """This module's cache, one thread (torchrun's default), no weights from the environment."""
    return {"DIFFIT_EVAL_CACHE": str(cache), "OMP_NUM_THREADS": "1", "DIFFIT_EVAL_INCEPTION_WEIGHTS": None, **extra}


def offline_env(cache: Path) -> dict:
    """Every https request goes to a proxy port nobody listens on: offline, whatever the machine's network."""
    return helpers.offline_env(cache, port=free_port())


# --------------------------------------------------------------------------------------------
# 1. build, then metrics against it


def test_build_then_metrics_same_folder_fid_zero(built, folders, weights):
    from diffit_eval.features.extract import extract_features
    from diffit_eval.features.network import InceptionFeatures
    from diffit_eval.io.sources import open_samples
    from diffit_eval.metrics.evaluate import evaluate, run_metrics
    from diffit_eval.references.store import load_reference

    meta = refs.read_meta(built)
    assert meta["count"] == N_IMAGES and meta["pr_images"] == 7 and meta["crop"] == "adm" and meta["resolution"] == 32
    assert meta["dataset"] == "mine" and meta["resize"] == "legacy-tf" and meta["feature_network"]["standin"] is True
    # What `metrics` computes from the same folder is what the build stored.
    net = InceptionFeatures(weights)
    samples = extract_features(open_samples(folders[0]), net, batch_size=4, progress=False)
    ref = load_reference("mine", allow_download=False)
    assert ref.name == "mine" and ref.meta["dataset"] == "mine" and ref.num_pr_images == 7
    assert np.array_equal(samples.pool.mean, ref.mu) and np.array_equal(samples.spatial.mean, ref.mu_s)
    assert np.abs(samples.pool.cov - ref.sigma).max() <= 1e-13 * np.abs(ref.sigma).max()
    assert np.abs(samples.spatial.cov - ref.sigma_s).max() <= 1e-13 * np.abs(ref.sigma_s).max()
    same = evaluate(samples, ref, ["fid", "pr"], net=net, batch_size=4, progress=False).values
    # FD of a Gaussian with itself: 0 up to rounding (the bound), through the library call
    # and through `metrics` itself.
    trace = float(np.trace(ref.sigma))
    assert abs(same["fid"]) <= 1e-6
    again = run_metrics(folders[0], "mine", metrics=["fid"], weights=str(weights), batch_size=4, progress=False)
    assert abs(again["fid"]) <= 1e-6
    assert same["precision"] == 1.0 and same["recall"] == 1.0  # every reference image is also a sample
    other = run_metrics(folders[1], "mine", metrics=["fid"], weights=str(weights), batch_size=4, progress=False)
    assert other["reference"]["name"] == "mine" and other["dataset"] == "mine" and other["resolution"] == 32
    assert other["fid"] > trace and other["fid"] > 1e3 * abs(same["fid"]), (same["fid"], other["fid"])


# --------------------------------------------------------------------------------------------
# 2. determinism: the same bytes every time, whatever the number of processes


def test_build_is_deterministic_across_world_sizes(cache, folders, weights, tmp_path, launcher_lock):
    # 10 images, batches of 3 in chunks of 4: partial batches, a partial chunk, two rounds at
    # world size 2. torchrun runs one thread per process (OMP_NUM_THREADS=1); every build here
    # does the same, since CPU kernels may sum in a thread-count-dependent order.
    data = tmp_path / "c"
    for f in sorted(folders[0].rglob("*.png"))[:10]:
        (data / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, data / f.parent.name / f.name)
    common = [
        "ref",
        "build",
        str(data),
        "--inception-weights",
        str(weights),
        "--device",
        "cpu",
        "--workers",
        "2",
        "--resolution",
        "32",
        "--batch-size",
        "3",
        "--chunk-size",
        "4",
        "--pr-images",
        "5",
        "--seed",
        "1",
        "-q",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun child runs
    try:
        one = helpers.cli(*common, "--name", "w1", "--out", str(tmp_path / "w1.npz"), env=subprocess_env(cache))
    finally:
        torch.set_num_threads(threads)
    assert one.returncode == 0, one.stderr
    two = helpers.run_argv(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            "-m",
            "diffit_eval",
            *common,
            "--name",
            "w2",
            "--out",
            str(tmp_path / "w2.npz"),
        ],
        env=subprocess_env(cache),
        timeout=300,
    )
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("wrote") == 1  # only rank 0 speaks
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = build.build_reference(
            data,
            name="again",
            out=tmp_path / "again.npz",
            resolution=32,
            weights=weights,
            batch_size=3,
            chunk_size=4,
            pr_images=5,
            seed=1,
            workers=0,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    a, b, c = arrays_of(tmp_path / "w1.npz"), arrays_of(tmp_path / "w2.npz"), arrays_of(again)
    for k in ARRAYS:
        assert a[k].tobytes() == b[k].tobytes() == c[k].tobytes(), k
    assert a["mu"].dtype == np.float64 and a["sigma"].shape == (2048, 2048) and a["sigma_s"].shape == (2023, 2023)
    # arr_0 holds the seeded subset of the (sorted) images, in index order
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
    expect = np.stack([np.asarray(Image.open(data / files[i]).convert("RGB")) for i in build.pr_subset(10, 5, seed=1)])
    assert a["arr_0"].shape == (5, 32, 32, 3) and np.array_equal(a["arr_0"], expect)
    assert not list(tmp_path.glob(".*"))  # no scratch or temporary files left


# --------------------------------------------------------------------------------------------
# 3. crops and inputs


def pil_adm_steps(im: Image.Image, size: int) -> np.ndarray:
    """ADM's center_crop_arr written out step by step with plain PIL calls."""
    w, h = im.size
    while min(w, h) >= 2 * size:
        w, h = w // 2, h // 2
        im = im.resize((w, h), resample=Image.BOX)
    s = size / min(w, h)
    w, h = round(w * s), round(h * s)
    im = im.resize((w, h), resample=Image.BICUBIC)
    top, left = (h - size) // 2, (w - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)))


@pytest.mark.parametrize(
    "wh,size",
    [
        ((101, 67), 32),
        ((67, 101), 32),
        ((33, 65), 32),
        ((257, 129), 64),
        ((129, 257), 64),
        ((45, 45), 32),
        ((31, 47), 32),
    ],
)
def test_adm_crop_matches_pil_steps(wh, size):
    rng = np.random.default_rng(sum(wh))
    im = Image.fromarray(rng.integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8))
    out = adm_center_crop(im, size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    assert np.array_equal(out, pil_adm_steps(im, size))


def test_edm_and_none_crops():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (51, 80, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    left = (80 - 51) // 2
    expect = np.asarray(Image.fromarray(arr[:, left : left + 51]).resize((32, 32), Image.LANCZOS))
    assert np.array_equal(edm_center_crop(im, 32), expect)
    square = Image.fromarray(arr[:32, :32])
    assert np.array_equal(edm_center_crop(square, 32), arr[:32, :32])  # EDM leaves RxR images as they are
    assert np.array_equal(CROPS["none"](square, 32), arr[:32, :32])
    with pytest.raises(ValueError):
        CROPS["none"](im, 32)


def test_folder_zip_and_npz_inputs_agree(folders, tmp_path):
    files = sorted(folders[0].rglob("*.png"), key=lambda p: p.relative_to(folders[0]).as_posix())
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        for f in files:
            z.write(f, f.relative_to(folders[0]).as_posix())
    np.savez(tmp_path / "a.npz", arr_0=np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))
    sets = [open_image_set(p) for p in (folders[0], tmp_path / "a.zip", tmp_path / "a.npz")]
    assert [s.num_images for s in sets] == [N_IMAGES] * 3
    for i in range(N_IMAGES):
        imgs = [load_preprocessed(s, i, 32, "adm") for s in sets]
        assert np.array_equal(imgs[0], imgs[1]) and np.array_equal(imgs[0], imgs[2])
    with pytest.raises(UserError, match="no such file"):
        open_image_set(tmp_path / "missing")


def test_build_odd_sizes_needs_a_crop(weights, tmp_path):
    odd = write_images(tmp_path / "odd", 4, seed=5, shift=0, sizes=[(45, 37), (37, 61), (70, 70)])
    with pytest.raises(UserError, match="not 32x32"):
        build.build_reference(
            odd,
            name="odd",
            out=tmp_path / "odd.npz",
            resolution=32,
            crop="none",
            weights=weights,
            pr_images=0,
            progress=False,
        )
    path = build.build_reference(
        odd,
        name="odd",
        out=tmp_path / "odd.npz",
        resolution=32,
        crop="edm",
        weights=weights,
        pr_images=0,
        progress=False,
    )
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        assert "arr_0" not in z.files and meta["holds"] == ["fid", "sfid"] and meta["crop"] == "edm"
        assert meta["count"] == 4 and np.isfinite(z["sigma"]).all()
    assert not (tmp_path / "refs").exists()  # --out: nothing in the cache


# --------------------------------------------------------------------------------------------
# 4. the registry file; list and show; corrupt files


def test_registry_file_validates():
    entries = refs.load_registry(refs.REGISTRY_PATH)
    assert set(PROTOCOL_URLS) <= set(entries)
    for name, e in entries.items():
        assert e["url"].startswith("https://") and isinstance(e["resolution"], int) and e["content"], name
        assert e["resize"] in ("legacy-tf", "clean") and e["protocol"] and e["source"] and e["licence"], name
        if "sha256" in e:
            assert len(e["sha256"]) == 64 and int(e["sha256"], 16) >= 0
    for name, url in PROTOCOL_URLS.items():
        assert entries[name]["url"] == url
    assert entries["imagenet256"]["pr_images"] == 10000 and entries["imagenet256"]["holds"] == ["fid", "sfid", "pr"]
    assert entries["cifar10"]["holds"] == ["fid"] and entries["cifar10-cleanfid-clean"]["resize"] == "clean"
    assert entries["cifar10-cleanfid-legacy"]["resize"] == "legacy-tf"


def test_registry_rejects_bad_entries(tmp_path):
    good = (
        '[refs.x]\nurl = "https://h/x.npz"\ndataset = "d"\nresolution = 32\nresize = "legacy-tf"\nholds = ["fid"]\n'
        'content = "c"\nprotocol = "p"\nsource = "s"\nlicence = "l"\n'
    )
    (tmp_path / "ok.toml").write_text(good)
    assert refs.load_registry(tmp_path / "ok.toml")["x"]["resolution"] == 32
    for broken, why in (
        (good.replace('url = "https://h/x.npz"\n', ""), "url"),
        (good.replace("resolution = 32", 'resolution = "32"'), "resolution"),
        (good.replace('"legacy-tf"', '"bilinear"'), "resize"),
        (good.replace('holds = ["fid"]', 'holds = ["pr"]'), "pr_images"),
    ):
        p = tmp_path / f"bad-{why}.toml"
        p.write_text(broken)
        with pytest.raises(UserError, match=why):
            refs.load_registry(p)


def test_list_and_show_render(built, capsys):
    code, out, _ = run_cli(capsys, "ref", "list")
    assert code == 0
    for name in list(PROTOCOL_URLS) + ["mine"]:
        assert name in out
    assert "built" in out and "fid,sfid,pr" in out
    code, out, _ = run_cli(capsys, "ref", "show", "mine")
    assert code == 0 and "[2048, 2048]" in out and "float64" in out and "P/R images: 7" in out
    assert f"statistics over: {N_IMAGES} images" in out and "FAIL" not in out and "positive semi-definite" in out
    assert str(built) in out and "crop=adm" in out and refs.read_record("mine")["sha256"] in out
    code, out, _ = run_cli(capsys, "ref", "show", "imagenet256")
    assert code == 0 and "not cached" in out and PROTOCOL_URLS["imagenet256"][:40] in out
    code, _, err = run_cli(capsys, "ref", "show", "no-such-ref")
    assert code == 1 and "unknown reference" in err and "imagenet256" in err


def test_show_flags_a_broken_covariance(tmp_path, capsys):
    rng = np.random.default_rng(0)
    sigma = rng.normal(size=(64, 64))  # neither symmetric nor PSD, nor 2048-d
    np.savez(tmp_path / "bad.npz", mu=np.zeros(64), sigma=sigma)
    code, out, err = run_cli(capsys, "ref", "show", str(tmp_path / "bad.npz"))
    assert code == 1 and "sanity checks failed" in err
    assert (
        "FAIL mu/sigma: symmetric" in out
        and "FAIL mu/sigma: positive semi-definite" in out
        and "FAIL mu: 2048-d" in out
    )


def test_corrupt_or_truncated_cached_file_is_removed(built, cache, capsys):
    # a copy of the built reference, cached as `copy` with its record
    shutil.copy(built, cache / "refs" / "copy.npz")
    assert refs.resolve_reference("copy") == cache / "refs" / "copy.npz"  # first sight: hashed and recorded
    assert refs.read_record("copy")["sha256"] == refs.read_record("mine")["sha256"]
    # truncated: caught by the cheap size check on any use
    with open(cache / "refs" / "copy.npz", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(refs.CorruptReferenceError, match="1000 bytes"):
        refs.resolve_reference("copy")
    assert not (cache / "refs" / "copy.npz").exists() and not (cache / "refs" / "copy.json").exists()
    # same size, one byte changed: caught by the sha256 check of `ref show` / `ref fetch`
    shutil.copy(built, cache / "refs" / "copy.npz")
    refs.resolve_reference("copy")
    data = bytearray((cache / "refs" / "copy.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (cache / "refs" / "copy.npz").write_bytes(bytes(data))
    assert refs.resolve_reference("copy") is not None  # the size still matches
    code, _, err = run_cli(capsys, "ref", "show", "copy")
    assert code == 1 and "corrupt" in err and "removed" in err and err.count("\n") == 1
    assert not (cache / "refs" / "copy.npz").exists()
    # a registry name with a recorded hash: the damaged file goes, offline it is then missing
    shutil.copy(built, cache / "refs" / "imagenet64.npz")
    refs.verify_cached("imagenet64")
    with open(cache / "refs" / "imagenet64.npz", "ab") as f:
        f.write(b"junk")
    with pytest.raises(refs.CorruptReferenceError, match="ref fetch imagenet64"):
        refs.resolve_reference("imagenet64", allow_download=False)
    assert not (cache / "refs" / "imagenet64.npz").exists()
    with pytest.raises(MissingAssetError, match="imagenet64_labeled.npz"):
        refs.resolve_reference("imagenet64", allow_download=False)


# --------------------------------------------------------------------------------------------
# Downloads against a local server: recorded hash, bad bytes never kept


class _Server:
    """Serves `files` (name -> bytes) over HTTP on 127.0.0.1; `/drop` sends a few bytes of the promised
    100000 and hangs up; `/reset` sends the headers, then resets the connection."""

    def __init__(self, files: dict[str, bytes]) -> None:
        files_ = files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                if name == "reset":  # headers, then a TCP reset: the connection breaks
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.flush()
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
                if name == "drop":
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(b"PK\x03\x04 truncated")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if name not in files_:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(files_[name])))
                self.end_headers()
                self.wfile.write(files_[name])

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def test_download_records_hash_and_never_keeps_bad_bytes(cache, tmp_path, monkeypatch):
    good = tmp_path / "small.npz"
    np.savez(good, mu=np.zeros(2048), sigma=np.eye(2048))
    server = _Server({"small.npz": good.read_bytes(), "junk.npz": b"not an npz at all"})
    base = {
        "dataset": "d",
        "resolution": 32,
        "resize": "legacy-tf",
        "holds": ["fid"],
        "content": "c",
        "protocol": "p",
        "source": "s",
        "licence": "l",
        "built": False,
    }
    table = {
        n: {**base, "name": n, "url": f"{server.url}/{f}"}
        for n, f in (
            ("srv-good", "small.npz"),
            ("srv-junk", "junk.npz"),
            ("srv-drop", "drop"),
            ("srv-reset", "reset"),
            ("srv-404", "nope"),
        )
    }
    monkeypatch.setattr(refs, "registry", lambda: table)
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    try:
        path, what = refs.fetch_reference("srv-good", progress=False)
        assert what == "downloaded; verified" and path.read_bytes() == good.read_bytes()
        rec = refs.read_record("srv-good")
        assert rec["sha256_source"] == "first download" and rec["size"] == good.stat().st_size
        assert rec["url"].endswith("/small.npz") and "fetched" in rec
        assert refs.fetch_reference("srv-good", progress=False)[1] == "already cached; verified"
        # a damaged cached copy is removed and fetched again
        data = bytearray(path.read_bytes())
        data[-100] ^= 1
        path.write_bytes(bytes(data))
        assert refs.fetch_reference("srv-good", progress=False)[1] == "downloaded; verified"
        assert path.read_bytes() == good.read_bytes()
        for name, error, match in (("srv-junk", UserError, "unusable"), ("srv-404", MissingAssetError, "HTTP 404")):
            with pytest.raises(error, match=match):
                refs.fetch_reference(name, progress=False)
            leftovers = [p.name for p in (cache / "refs").iterdir() if name in p.name]
            assert leftovers == [], leftovers
        # a transfer cut short of its Content-Length: never renamed into place; the `.part` stays to resume
        with pytest.raises(MissingAssetError, match="stopped at 14 of 100000 bytes"):
            refs.fetch_reference("srv-drop", progress=False)
        assert not refs.cached_path("srv-drop").exists()
        assert refs.part_path("srv-drop").stat().st_size == 14
        # a broken connection: one line naming the URL; a 0-byte `.part` holds nothing to resume, so it goes
        refs.part_path("srv-reset").write_bytes(b"")
        with pytest.raises(MissingAssetError, match="/reset"):
            refs.fetch_reference("srv-reset", progress=False)
        assert not refs.part_path("srv-reset").exists()
    finally:
        server.close()


# --------------------------------------------------------------------------------------------
# 5. offline: one line, exit 2, nothing half-written


@pytest.mark.parametrize("command", ["fetch", "metrics"])
def test_offline_is_one_line_exit_2(command, folders, weights, tmp_path):
    cache = tmp_path / "cache"
    args = (
        ["ref", "fetch", "imagenet256"]
        if command == "fetch"
        else ["metrics", str(folders[0]), "--ref", "imagenet256", "--inception-weights", str(weights), "-q"]
    )
    proc = helpers.cli(*args, env=offline_env(cache), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert PROTOCOL_URLS["imagenet256"] in lines[0] and "--ref PATH" in lines[0]
    left = [p for p in (cache / "refs").rglob("*")] if (cache / "refs").exists() else []
    assert left == [], left


def test_build_then_metrics_runs_each_reference_image_once(cache, folders, weights, tmp_path, monkeypatch):
    """A built reference keeps its P/R images' pool_3 rows (made in the build's own pass), so the
    first `metrics` against it runs only the samples; the numbers equal those of the same file
    without the rows (ADM's images-only layout), whose P/R images are extracted then."""
    from diffit_eval.features.network import InceptionFeatures
    from diffit_eval.metrics.evaluate import run_metrics

    seen = []  # images per Inception forward
    original = InceptionFeatures.forward
    monkeypatch.setattr(
        InceptionFeatures, "forward", lambda self, images: seen.append(len(images)) or original(self, images)
    )
    out = build.build_reference(
        folders[0], name="once", resolution=32, weights=weights, out=tmp_path / "once.npz", **FIXTURE_BUILD
    )
    assert sum(seen) == N_IMAGES
    with np.load(out) as z:
        arrays = dict(z)
    assert arrays["pr_pool"].shape == (7, 2048) and arrays["pr_pool"].dtype == np.float32
    from diffit_eval.references.inspect import inspect_file

    shown = inspect_file(out)
    assert shown["ok"] and any(c["check"].startswith("pr_pool") and c["ok"] for c in shown["checks"])
    options = dict(metrics=["fid", "pr", "kid"], weights=str(weights), batch_size=4, progress=False)
    first = run_metrics(folders[1], str(out), **options)
    assert sum(seen) == 2 * N_IMAGES  # the samples only

    del arrays["pr_pool"]
    np.savez(tmp_path / "images-only.npz", **arrays)
    again = run_metrics(folders[1], str(tmp_path / "images-only.npz"), **options)
    assert sum(seen) == 3 * N_IMAGES + 7  # the samples again, and now the 7 P/R images
    for key in ("fid", "precision", "recall", "kid"):
        assert again[key] == pytest.approx(first[key], rel=1e-6, abs=1e-9), key
    assert 0 < first["precision"] < 1 or 0 < first["recall"] < 1 or first["kid"] != 0  # a real comparison
