"""Real data: Dominick's orange-juice panel (weekly, 83 stores x 11 brands = 913 series).

The panel ships in Debian's ``r-cran-bayesm`` package as ``data/orangeJuice.rda`` (a list with
``yx``: store, brand, week, logmove, price1..price11, deal, feat, profit; and ``storedemo``: 83
stores x 11 demographics). :func:`fetch_orange_juice` runs ``apt-get download r-cran-bayesm``,
unpacks the .deb with ``dpkg-deb -x``, reads the .rda with the PyPI package ``rdata`` and writes:

* ``sales.parquet``: ``unique_id`` (= store * 100 + brand), ``ds`` (week start: Dominick's week 1
  began on 1989-09-14, so week ``w`` starts on 1989-09-14 + 7 (w - 1) days), ``y`` (units moved =
  ``round(exp(logmove))``), ``price`` (the brand's own price, $/oz), ``price1..price11`` (all
  brands' prices in that store-week: cross prices), ``deal`` (0/1 in-store coupon), ``feat``
  (feature advertisement share);
* ``static.parquet``: ``unique_id, store, brand`` (as strings, embedded) and the store
  demographics;
* ``imputed.parquet``: ``unique_id, ds`` of weeks missing in the source (about 4% of the grid),
  which the loader fills so that every series is on a regular weekly grid: ``y`` by linear
  interpolation of ``log(1 + y)``, covariates by forward then backward fill.

Tests never need this (no downloads in tests); the benchmark uses it when ``--oj DIR`` is given.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

WEEK1 = pd.Timestamp("1989-09-14")
PACKAGE = "r-cran-bayesm"
RDA_PATH = "usr/lib/R/site-library/bayesm/data/orangeJuice.rda"


def download_bayesm(workdir: Path) -> Path:
    """``apt-get download r-cran-bayesm`` into ``workdir``; return the .deb path."""
    try:
        subprocess.run(
            ["apt-get", "download", PACKAGE], cwd=workdir, check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        raise ValueError(
            f"apt-get download {PACKAGE}: expected the Debian package, failed with {exc} "
            f"{err.decode(errors='replace')[-300:]}"
        ) from exc
    debs = sorted(workdir.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise ValueError(f"apt-get download {PACKAGE}: expected a .deb in {workdir}, found none")
    return debs[-1]


def read_orange_juice_rda(rda: str | os.PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(yx, storedemo)`` frames from ``orangeJuice.rda``."""
    import rdata

    data = rdata.read_rda(str(rda))
    oj = data["orangeJuice"]
    yx = pd.DataFrame(oj["yx"]).reset_index(drop=True)
    demo = pd.DataFrame(oj["storedemo"]).reset_index(drop=True)
    return yx, demo


def convert_orange_juice(
    yx: pd.DataFrame, demo: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Long format ``(sales, static, imputed)`` from the raw frames (see module docstring)."""
    yx = yx.copy()
    for c in ("store", "brand", "week", "deal"):
        yx[c] = yx[c].astype(np.int64)
    price_cols = [f"price{b}" for b in range(1, 12)]
    yx["unique_id"] = yx["store"] * 100 + yx["brand"]
    yx["y"] = np.round(np.exp(yx["logmove"].astype(np.float64)))
    own = yx[price_cols].to_numpy(np.float64)
    yx["price"] = own[np.arange(len(yx)), yx["brand"].to_numpy() - 1]
    keep = ["unique_id", "week", "y", "price", *price_cols, "deal", "feat"]
    yx = yx[keep].sort_values(["unique_id", "week"]).reset_index(drop=True)
    parts, imputed = [], []
    for uid, g in yx.groupby("unique_id", sort=True):
        weeks = np.arange(g["week"].min(), g["week"].max() + 1)
        full = g.set_index("week").reindex(weeks)
        miss = full["y"].isna().to_numpy()
        full["y"] = np.expm1(np.log1p(full["y"]).interpolate(limit_direction="both")).round()
        full = full.ffill().bfill()
        full["unique_id"] = uid
        full["week"] = weeks
        parts.append(full.reset_index(drop=True))
        if miss.any():
            imputed.append(pd.DataFrame({"unique_id": uid, "week": weeks[miss]}))
    sales = pd.concat(parts, ignore_index=True)
    sales["ds"] = WEEK1 + pd.to_timedelta((sales["week"] - 1) * 7, unit="D")
    sales["unique_id"] = sales["unique_id"].astype(np.int64)
    sales["deal"] = sales["deal"].astype(np.int64)
    sales = sales[["unique_id", "ds", "y", "price", *price_cols, "deal", "feat"]]
    imp = (
        pd.concat(imputed, ignore_index=True)
        if imputed
        else pd.DataFrame({"unique_id": [], "week": []})
    )
    imp["ds"] = WEEK1 + pd.to_timedelta((imp["week"].astype(np.int64) - 1) * 7, unit="D")
    imp = imp[["unique_id", "ds"]].astype({"unique_id": np.int64})
    uids = sales["unique_id"].drop_duplicates().to_numpy()
    static = pd.DataFrame(
        {"unique_id": uids, "store": (uids // 100).astype(str), "brand": (uids % 100).astype(str)}
    )
    demo = demo.rename(columns={"STORE": "store_id"}).copy()
    demo["store"] = demo["store_id"].astype(np.int64).astype(str)
    demo = demo.drop(columns=["store_id"])
    static = static.merge(demo, on="store", how="left")
    num = [c for c in static.columns if c not in ("unique_id", "store", "brand")]
    static[num] = static[num].astype(np.float64).fillna(static[num].astype(np.float64).mean())
    return sales, static, imp


def fetch_orange_juice(out_dir: str | os.PathLike[str], deb: str | None = None) -> list[Path]:
    """Download (unless ``deb`` names a local .deb), convert and write the OJ panel to ``out_dir``.

    Returns:
        the written paths (sales.parquet, static.parquet, imputed.parquet).
    """
    from shopml.common.io import write_parquet

    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        deb_path = Path(deb) if deb else download_bayesm(tmp_path)
        try:
            subprocess.run(
                ["dpkg-deb", "-x", str(deb_path), str(tmp_path / "x")],
                check=True,
                capture_output=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ValueError(
                f"dpkg-deb -x {deb_path}: expected to unpack it, failed: {exc}"
            ) from exc
        rda = tmp_path / "x" / RDA_PATH
        if not rda.is_file():
            raise ValueError(f"{deb_path}: expected {RDA_PATH} inside, found none")
        yx, demo = read_orange_juice_rda(rda)
    sales, static, imputed = convert_orange_juice(yx, demo)
    return [
        write_parquet(out / "sales.parquet", sales),
        write_parquet(out / "static.parquet", static),
        write_parquet(out / "imputed.parquet", imputed),
    ]
