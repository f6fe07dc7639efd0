"""Generate a world directory: ``generate_world(out_dir, scale, seed)``.

The world is written into a temporary sibling directory and renamed into place at the end, so a
crash never leaves a half-written world. Large tables (sales, events, impressions) are written in
chunks through ``pyarrow.parquet.ParquetWriter``, so the large scale never holds all rows in memory.
Every random stream is derived from ``(seed, stream, chunk)``: the same seed gives identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shopml.world.events import UserParams

SCALES = ("tiny", "small", "medium", "large")
START = pd.Timestamp("2024-01-01")
END = pd.Timestamp("2025-12-31")
TEST_FRACTION = 0.2  # impressions in the last 20% of the window are the test split
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ScaleConfig:
    n_products: int
    n_street: int
    n_users: int
    users: UserParams
    product_chunk: int  # products per sales chunk
    user_chunk: int  # users per events chunk
    pooled_images: bool  # render images in a process pool


SCALE_CONFIGS: dict[str, ScaleConfig] = {
    "tiny": ScaleConfig(200, 80, 100, UserParams(25, 0.8, 0.05, 1.3, 400, 6), 2000, 100_000, False),
    "small": ScaleConfig(
        2000, 1000, 5000, UserParams(30, 0.9, 0.05, 1.2, 2000, 8), 2000, 100_000, True
    ),
    "medium": ScaleConfig(
        30_000, 5000, 50_000, UserParams(40, 1.0, 0.08, 1.0, 5000, 10), 2000, 10_000, True
    ),
    "large": ScaleConfig(
        100_000, 10_000, 1_000_000, UserParams(60, 1.0, 0.08, 1.0, 8000, 4), 1000, 10_000, True
    ),
}


def _rng(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, chunk])


def _check_args(out_dir, scale: str, seed: int) -> Path:
    if scale not in SCALE_CONFIGS:
        raise ValueError(f"scale: expected one of {list(SCALES)}, found {scale!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, found {seed!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir: expected a directory (or nothing) at {out}, found a file")
    if out.is_dir() and any(out.iterdir()) and not (out / "world.json").is_file():
        raise ValueError(
            f"out_dir: expected an empty directory or an existing world (with world.json) at {out}, "
            f"found other files ({sorted(p.name for p in out.iterdir())[:5]}); refusing to overwrite"
        )
    return out


class _ChunkWriter:
    """Append DataFrames to one parquet file, chunk by chunk (first chunk fixes the schema)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = None
        self.rows = 0

    def write(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)
        self.rows += len(df)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def generate_world(
    out_dir: str | os.PathLike[str],
    scale: str = "tiny",
    seed: int = 0,
    progress: bool | None = None,
    processes: int | None = None,
    config: ScaleConfig | None = None,
) -> Path:
    """Generate a synthetic retail world in ``out_dir`` and return ``out_dir`` as a Path.

    Args:
        out_dir: target directory; must be absent, empty, or an earlier world (it is replaced).
        scale: "tiny" (tests, seconds), "small" (CPU demo), "medium" (~30k products), "large"
            (~1M users, streamed in chunks).
        seed: non-negative int; the same seed gives byte-identical tables and images.
        progress: report each stage's progress on stderr (:class:`shopml.common.progress.Progress`:
            a bar on a terminal, plain lines in a log); None (default): when stderr is a terminal.
        processes: image-rendering worker processes (default: CPUs, for small and larger scales).
        config: overrides the scale's :class:`ScaleConfig` (sizes, chunking); ``scale`` then only
            names the world in world.json.

    Raises:
        ValueError: bad scale, seed or out_dir.
    """
    out = _check_args(out_dir, scale, seed)
    seed = int(seed)
    if progress is None:
        progress = sys.stderr.isatty()
    cfg = config if config is not None else SCALE_CONFIGS[scale]
    if cfg.n_products < 10 or cfg.n_users < 1 or cfg.product_chunk < 1 or cfg.user_chunk < 1:
        raise ValueError(
            f"config: expected >= 10 products, >= 1 user and positive chunks, found {cfg}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _generate_into(tmp, scale, cfg, seed, progress, processes)
        _normal_permissions(tmp)
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, trash / "w")
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _generate_into(
    tmp: Path, scale: str, cfg: ScaleConfig, seed: int, progress: bool, processes
) -> None:
    from shopml.common.io import write_json, write_parquet
    from shopml.common.progress import Progress
    from shopml.world import catalog as catalog_mod
    from shopml.world import events as events_mod
    from shopml.world import images as images_mod
    from shopml.world import sales as sales_mod

    (tmp / "truth").mkdir()
    (tmp / "images" / "catalog").mkdir(parents=True)
    (tmp / "images" / "street").mkdir(parents=True)
    n_procs = processes or (images_mod.default_processes() if cfg.pooled_images else 1)
    # Catalog.
    cat = catalog_mod.make_catalog(_rng(seed, 1), cfg.n_products, START, END)
    write_parquet(tmp / "catalog.parquet", cat.products)
    truth_products = cat.truth.copy()
    truth_products["vector"] = list(cat.vectors)
    write_parquet(tmp / "truth" / "products.parquet", truth_products)

    # Street photos: 1-3 photos each of a subset of products; split by product.
    rng = _rng(seed, 2)
    n_street = min(cfg.n_street, 2 * cfg.n_products)
    per = rng.choice([1, 2, 3], size=n_street, p=[0.5, 0.3, 0.2])
    n_prod_photo = int(np.searchsorted(np.cumsum(per), n_street) + 1)
    photo_products = np.sort(
        rng.choice(cat.products["product_id"].to_numpy(), size=n_prod_photo, replace=False)
    )
    counts = per[:n_prod_photo].copy()
    counts[-1] -= int(counts.sum()) - n_street
    q_products = np.repeat(photo_products, counts)
    test_products = set(
        rng.choice(photo_products, size=max(1, round(0.25 * n_prod_photo)), replace=False).tolist()
    )
    query_id = np.arange(1, n_street + 1, dtype=np.int64)
    street = pd.DataFrame(
        {
            "query_id": query_id,
            "product_id": q_products.astype(np.int64),
            "image": [f"images/street/{q}.png" for q in query_id],
            "split": ["test" if p in test_products else "train" for p in q_products],
        }
    )
    write_parquet(tmp / "street.parquet", street)

    # Images.
    specs = _specs(cat, catalog_mod, images_mod)
    jobs = [
        ("catalog", specs[pid], seed, int(pid), str(tmp / "images" / "catalog" / f"{pid}.png"))
        for pid in cat.products["product_id"]
    ]
    jobs += [
        ("street", specs[int(p)], seed, int(q), str(tmp / "images" / "street" / f"{q}.png"))
        for q, p in zip(street["query_id"], street["product_id"], strict=True)
    ]
    with Progress(len(jobs), "images", enabled=progress) as bar:
        images_mod.render_images(jobs, processes=n_procs, progress=bar)

    # Calendar and sales.
    write_parquet(tmp / "calendar.parquet", sales_mod.make_calendar(START, END))
    bar = Progress(cfg.n_products, "sales", enabled=progress)
    sales_w = _ChunkWriter(tmp / "sales.parquet")
    mean_w = _ChunkWriter(tmp / "truth" / "sales_mean.parquet")
    try:
        for s_df, t_df in sales_mod.sales_chunks(
            lambda c: _rng(seed, 3, c), cat.products, cat.truth, START, END, cfg.product_chunk
        ):
            sales_w.write(s_df)
            mean_w.write(t_df)
            bar.update(bar.completed + s_df["unique_id"].nunique())
    finally:
        bar.close()
        sales_w.close()
        mean_w.close()

    # Users, events, impressions.
    window_s = int((END + pd.Timedelta(days=1) - START).total_seconds())
    cutoff = START + pd.Timedelta(seconds=int(window_s * (1 - TEST_FRACTION)))
    index = events_mod.ProductIndex(cat.products, cat.truth, cat.vectors, START)
    users = events_mod.make_users(_rng(seed, 4), cfg.n_users, cfg.users, index, window_s)
    bar = Progress(cfg.n_users, "events", enabled=progress)
    ev_w = _ChunkWriter(tmp / "events.parquet")
    im_w = _ChunkWriter(tmp / "impressions.parquet")
    it_w = _ChunkWriter(tmp / "truth" / "impressions.parquet")
    first_ts = []
    try:
        for ev, im, it, f in events_mod.event_chunks(
            lambda c: _rng(seed, 5, c), users, index, START, cutoff, cfg.user_chunk, cfg.users
        ):
            ev_w.write(ev)
            im_w.write(im)
            it_w.write(it)
            first_ts.append(f)
            bar.update(bar.completed + len(f))
    finally:
        bar.close()
        ev_w.close()
        im_w.close()
        it_w.close()
    u = users.users.copy()
    u["signup_ts"] = np.datetime64(START.to_datetime64(), "ns") + np.concatenate(first_ts).astype(
        "timedelta64[s]"
    ).astype("timedelta64[ns]")
    write_parquet(tmp / "users.parquet", u)
    tastes = pd.DataFrame(users.taste, columns=list(catalog_mod.CATEGORY_NAMES))
    tastes.insert(0, "user_id", u["user_id"].to_numpy())
    tastes["favourite_brand"] = index.brand_codes[users.fav_brand]
    tastes["n_events"] = users.n_events
    write_parquet(tmp / "truth" / "users.parquet", tastes)

    meta = {
        "format_version": FORMAT_VERSION,
        "scale": scale,
        "seed": seed,
        "start": str(START.date()),
        "end": str(END.date()),
        "impressions_test_from": str(cutoff),
        "config": asdict(cfg),
        "counts": {
            "products": int(cfg.n_products),
            "street_photos": int(n_street),
            "sales_rows": int(sales_w.rows),
            "users": int(cfg.n_users),
            "events": int(ev_w.rows),
            "impressions": int(im_w.rows),
        },
        "sales_model": {
            "dow_factors": sales_mod.DOW_FACTORS.tolist(),
            "promo_lift": sales_mod.PROMO_LIFT,
            "deal_lift": sales_mod.DEAL_LIFT,
            "deal_p_normal": sales_mod.DEAL_P_NORMAL,
            "deal_p_festival": sales_mod.DEAL_P_FESTIVAL,
            "elasticity_mean": -2.5,
        },
        "click_model": {
            "recent_window": events_mod.RECENT_WINDOW,
            "recency": events_mod.RECENCY,
            "bias": events_mod.BIAS,
            "w_similarity": events_mod.W_SIM,
            "w_popularity": events_mod.W_POP,
            "w_taste": events_mod.W_TASTE,
            "w_position": events_mod.W_POS,
        },
    }
    write_json(tmp / "world.json", meta)


def _normal_permissions(root: Path) -> None:
    """Give the world's directories and tables the usual modes (temp files are created 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        d.chmod(0o777 & ~umask)
    for f in [*root.glob("*.*"), *(root / "truth").glob("*.*")]:
        f.chmod(0o666 & ~umask)


def _specs(cat, catalog_mod, images_mod) -> dict[int, object]:
    p = cat.products
    t = cat.truth
    colors = catalog_mod.COLORS
    return {
        int(pid): images_mod.ProductSpec(
            product_id=int(pid),
            category=c,
            variant=int(v),
            color=colors[col],
            accent=colors[acc],
            pattern=pat,
            pattern_scale=int(sc),
            mark_shape=ms,
            mark_color=colors[mc],
        )
        for pid, c, v, col, acc, pat, sc, ms, mc in zip(
            p["product_id"],
            p["category"],
            p["variant"],
            p["color"],
            p["accent_color"],
            p["pattern"],
            p["pattern_scale"],
            t["mark_shape"],
            t["mark_color"],
            strict=True,
        )
    }


def world_meta(world_dir: str | os.PathLike[str]) -> dict:
    """The world.json of a generated world ({} when absent, e.g. user data)."""
    path = Path(world_dir) / "world.json"
    return json.loads(path.read_text()) if path.is_file() else {}
