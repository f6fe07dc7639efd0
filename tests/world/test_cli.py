"""`shopml world generate` and `shopml world describe` through typer's CliRunner."""

from __future__ import annotations

from typer.testing import CliRunner

from shopml.cli import app

runner = CliRunner()


def test_generate_then_describe(tmp_path):
    out = tmp_path / "w"
    res = runner.invoke(
        app, ["world", "generate", "--out", str(out), "--scale", "tiny", "--seed", "3"]
    )
    assert res.exit_code == 0, res.output
    assert "wrote a tiny world (seed 3)" in res.output
    assert (out / "sales.parquet").is_file()
    res = runner.invoke(app, ["world", "describe", str(out)])
    assert res.exit_code == 0, res.output
    for text in ("products", "zero share", "day-of-week", "history length", "click_rate"):
        assert text in res.output, text


def test_describe_the_fixture_world(tiny_world):
    res = runner.invoke(app, ["world", "describe", str(tiny_world)])
    assert res.exit_code == 0, res.output
    assert "200" in res.output


def test_bad_scale_exits_2(tmp_path):
    res = runner.invoke(app, ["world", "generate", "--out", str(tmp_path / "w"), "--scale", "huge"])
    assert res.exit_code == 2
    assert "huge" in res.output and "tiny" in res.output


def test_negative_seed_exits_2(tmp_path):
    res = runner.invoke(app, ["world", "generate", "--out", str(tmp_path / "w"), "--seed", "-4"])
    assert res.exit_code == 2
    assert "non-negative" in res.output


def test_out_dir_with_other_files_exits_2(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    res = runner.invoke(app, ["world", "generate", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "out_dir" in res.output and "refusing to overwrite" in res.output


def test_describe_missing_directory_exits_2(tmp_path):
    res = runner.invoke(app, ["world", "describe", str(tmp_path / "nothing")])
    assert res.exit_code == 2
    assert "expected a directory" in res.output


def test_describe_broken_world_exits_2(tiny_world, tmp_path):
    import shutil

    d = tmp_path / "w"
    shutil.copytree(tiny_world, d)
    (d / "sales.parquet").write_text("garbage")
    res = runner.invoke(app, ["world", "describe", str(d)])
    assert res.exit_code == 2
    assert "sales.parquet" in res.output
