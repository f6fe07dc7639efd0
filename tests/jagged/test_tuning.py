"""Tile choices remembered on disk and shipped for known GPUs (shopml.jagged.triton.tuning)."""

from __future__ import annotations

import json

import pytest
import torch

from shopml.jagged.triton import tuning
from shopml.jagged.triton.launch import FastLauncher
from shopml.jagged.triton.tuning import DiskCache, Tuner, make_key, nearest

KEY = ("n_bucket", "HEAD_DIM", "CAUSAL")
SMALL = {"BLOCK": 32, "num_warps": 4, "num_stages": 2}
LARGE = {"BLOCK": 64, "num_warps": 8, "num_stages": 3}


class _Kernel:
    """A triton.jit stand-in: ``arg_names`` and ``kernel[grid](*args, **kw)`` that records."""

    arg_names = ["x_ptr", "acc_ptr", "n_bucket", "HEAD_DIM", "CAUSAL", "BLOCK"]

    def __init__(self):
        self.launches = []

    def __getitem__(self, grid):
        def launch(*args, **kw):
            self.launches.append(kw)
            args[1].add_(1.0)  # an accumulator the kernel adds into
            return None

        return launch


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """A fake GPU name and class, an empty cache dir, no shipped table."""
    monkeypatch.setenv("SHOPML_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tuning, "gpu_name", lambda i: "NVIDIA Test GPU")
    monkeypatch.setattr(tuning, "gpu_class", lambda i: "sm90-132")
    monkeypatch.setattr(tuning, "pretuned_table", lambda cls: {})
    tuning.disk_cache.cache_clear()
    yield tmp_path
    tuning.disk_cache.cache_clear()


def _tuner(times=None, tune=True):
    calls = []

    def bench(fn):
        fn()
        calls.append(1)
        return times.pop(0)

    t = Tuner("toy", 3, KEY, lambda f: [SMALL, LARGE], tune=tune, reset=("acc_ptr",), bench=bench)
    return t, calls


def _choose(t, n=1000):
    kernel = _Kernel()
    acc = torch.zeros(4)
    args = (torch.zeros(4), acc, tuning_bucket(n))
    return t.choose(kernel, lambda meta: (1,), args, {"HEAD_DIM": 64, "CAUSAL": False}), acc


def tuning_bucket(n):
    from shopml.jagged.triton._common import pow2

    return pow2(n)


def test_key_names_every_field_with_booleans_as_ints():
    key = make_key("attn_fwd", 2, torch.bfloat16, {"q_bucket": 1024, "HEAD_DIM": 64, "C": True})
    assert key == "attn_fwd@2|bfloat16|q_bucket=1024|HEAD_DIM=64|C=1"


def test_nearest_takes_exact_then_the_closest_bucket_with_equal_other_fields():
    mk = lambda b, d=64, v=1: make_key("k", v, torch.float16, {"q_bucket": b, "HEAD_DIM": d})
    table = {mk(256): {"B": 1}, mk(4096): {"B": 2}, mk(1024, d=128): {"B": 3}}
    assert nearest(table, mk(256)) == {"B": 1}
    assert nearest(table, mk(512)) == {"B": 1}
    assert nearest(table, mk(2048)) == {"B": 2}
    assert nearest(table, mk(16384)) == {"B": 2}
    assert nearest(table, mk(1024, d=128)) == {"B": 3}
    assert nearest(table, mk(1024, d=32)) is None  # another head dim: no entry
    assert nearest(table, mk(256, v=2)) is None  # another kernel version
    assert nearest({mk(256): {"B": 1}, mk(1024): {"B": 2}}, mk(512)) == {"B": 2}  # tie: larger


def test_nearest_borrows_a_soft_field_only_when_no_entry_has_this_value():
    mk = lambda b, m: make_key("k", 1, torch.float16, {"q_bucket": b, "BIAS_MODE": m})
    table = {mk(256, 0): {"B": 1}, mk(4096, 0): {"B": 2}, mk(4096, 2): {"B": 3}}
    assert nearest(table, mk(256, 2), soft=("BIAS_MODE",)) == {"B": 3}  # same mode, far bucket
    assert nearest(table, mk(256, 1), soft=("BIAS_MODE",)) == {"B": 1}  # no mode-1 entry
    assert nearest(table, mk(256, 1)) is None  # not soft: no match


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOPML_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert tuning.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("SHOPML_CACHE_DIR")
    assert tuning.cache_dir() == tmp_path / "b" / "shopml"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tuning.cache_dir() == tmp_path / "home" / ".cache" / "shopml"


def test_disk_cache_merges_writers_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "autotune" / "gpu.json"
    a, b = DiskCache(path), DiskCache(path)
    assert a.get("k1") is None  # no file yet
    a.put("k1", SMALL)
    b.put("k2", LARGE)  # another process: re-reads the file, so k1 survives
    assert DiskCache(path).get("k1") == SMALL and DiskCache(path).get("k2") == LARGE
    assert [p.name for p in path.parent.iterdir()] == ["gpu.json"]
    assert json.loads(path.read_text())["format"] == tuning.CACHE_FORMAT


def test_a_corrupt_or_foreign_cache_file_is_ignored_then_replaced(tmp_path):
    path = tmp_path / "gpu.json"
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        assert DiskCache(path).get("k") is None
    path.write_text(json.dumps({"format": 999, "entries": {"k": SMALL}}))
    assert DiskCache(path).get("k") is None
    path.write_text(json.dumps({"format": 1, "entries": {"k": {"BLOCK": "x"}, "j": SMALL}}))
    assert DiskCache(path).get("k") is None and DiskCache(path).get("j") == SMALL
    path.write_text("{not json")
    with pytest.warns(UserWarning):
        DiskCache(path).put("k", LARGE)
    assert DiskCache(path).get("k") == LARGE


def test_first_process_times_and_remembers_the_second_reads_back(gpu):
    t, calls = _tuner(times=[2.0, 1.0])
    cfg, acc = _choose(t)
    assert cfg == LARGE and len(calls) == 2 and t.sources[next(iter(t.sources))] == "timed"
    assert torch.equal(acc, torch.zeros(4))  # the timed runs' additions are undone
    (path,) = (gpu / "autotune").iterdir()
    assert path.name == "nvidia-test-gpu.json"
    assert list(json.loads(path.read_text())["entries"].values()) == [LARGE]
    assert _choose(t)[0] == LARGE and len(calls) == 2  # same process: from memory
    tuning.disk_cache.cache_clear()  # a new process
    t2, calls2 = _tuner(times=[], tune=False)
    assert _choose(t2)[0] == LARGE and not calls2
    assert list(t2.sources.values()) == ["disk"]
    assert _choose(t2, n=3000)[0] == SMALL  # another bucket: not remembered, tuning off
    t3, _ = _tuner(times=[5.0, 9.0])
    assert _choose(t3, n=3000)[0] == SMALL


def test_shipped_table_serves_a_known_gpu_class_without_timing(gpu, monkeypatch):
    key = make_key("toy", 3, torch.float32, {"n_bucket": 4096, "HEAD_DIM": 64, "CAUSAL": False})
    monkeypatch.setattr(
        tuning, "pretuned_table", lambda cls: {key: LARGE} if cls == "sm90-132" else {}
    )
    t, calls = _tuner(times=[])
    assert _choose(t, n=1000)[0] == LARGE and not calls  # the nearest bucket (4096)
    assert list(t.sources.values()) == ["pretuned"]
    assert not (gpu / "autotune").exists()  # nothing timed, nothing written
    monkeypatch.setattr(tuning, "gpu_class", lambda i: "sm80-108")
    t2, _ = _tuner(times=[], tune=False)
    assert _choose(t2)[0] == SMALL  # unknown class, tuning off: the default


def test_a_remembered_config_outside_the_candidates_is_not_used(gpu):
    key = make_key("toy", 3, torch.float32, {"n_bucket": 1024, "HEAD_DIM": 64, "CAUSAL": False})
    tuning.disk_cache(str(gpu), "NVIDIA Test GPU").put(key, {"BLOCK": 128, "num_warps": 4})
    t, calls = _tuner(times=[3.0, 1.0])
    assert _choose(t)[0] == LARGE and len(calls) == 2


def test_a_config_that_fails_is_skipped_and_all_failing_raises(gpu):
    def bench(fn):
        raise RuntimeError("out of resources")

    t = Tuner("toy", 3, KEY, lambda f: [SMALL, LARGE], bench=bench)
    with pytest.raises(RuntimeError, match="no launch config ran"):
        _choose(t)


def test_fast_launcher_launches_with_the_tuned_config(gpu, monkeypatch):
    monkeypatch.setattr(torch._C, "_cuda_getDevice", lambda: 0, raising=False)
    kernel = _Kernel()
    t, _ = _tuner(times=[2.0, 1.0])
    fl = FastLauncher(kernel, t)
    fl.enabled = False  # the ordinary path: every launch goes through the tuner's choice
    args = (torch.zeros(4), torch.zeros(4), 1024)
    fl(lambda meta: (1,), args, {"HEAD_DIM": 64, "CAUSAL": False})
    fl(lambda meta: (1,), args, {"HEAD_DIM": 64, "CAUSAL": False})
    assert kernel.launches[-1] == {"HEAD_DIM": 64, "CAUSAL": False, **LARGE}
    assert kernel.launches[-2] == kernel.launches[-1]


def test_every_shipped_entry_belongs_to_a_current_kernel_and_candidate():
    from shopml.jagged.triton import attention_bwd, attention_fwd

    tuners = {
        f._tuner.name: f._tuner
        for f in (attention_fwd._FWD, attention_bwd._FUSED, attention_bwd._DQ, attention_bwd._DKDV,
                  attention_fwd._FWD_TMA, attention_bwd._DQ_TMA, attention_bwd._DKDV_TMA)
    }  # fmt: skip
    tables = tuning._pretuned()
    assert tables, "pretuned.json is empty or unreadable"
    for entries in tables.values():
        for key, cfg in entries.items():
            name, version = key.split("|")[0].split("@")
            tuner = tuners[name]
            assert int(version) == tuner.version, f"{key}: stale version (re-run the pretune)"
            fields = dict(p.split("=") for p in key.split("|")[2:])
            assert list(fields) == list(tuner.key_names)
            shapes = tuner.candidates({k: int(v) for k, v in fields.items()})
            if len(shapes) > 1:  # not under the interpreter
                assert cfg in shapes, f"{key}: {cfg} is not a candidate any more"
