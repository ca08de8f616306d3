from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from common import plot
from common.errors import InputError
from common.logging import JsonLogger, read_log

META = {"train_loss": {"format": ":.5f"}, "train_throughput": {"unit": "samples/s", "format": ":.3e"}}


def _write_log(path: Path, epochs: int = 3) -> None:
    log = JsonLogger(path, metadata=META, stdout=io.StringIO())
    log.parameters({"batch_size": 4, "data": Path("/d"), "layers": [8, 4]})
    for e in range(epochs):
        log.log([e], {"train_loss": 1.0 / (e + 1), "hr@10": 0.1 * e, "train_throughput": torch.tensor(1e6)})
    log.summary({"best_accuracy": 0.2, "best_epoch": 2})
    log.close()


def test_records_parse_back_in_dllogger_format(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    _write_log(path)
    lines = path.read_text().splitlines()
    assert all(line.startswith("DLLL {") for line in lines)
    records = [json.loads(line[5:]) for line in lines]
    assert records == read_log(path)
    meta = [r for r in records if r["type"] == "METADATA"]
    assert [m["metric"] for m in meta] == list(META)
    assert meta[1]["metadata"] == {"unit": "samples/s", "format": ":.3e"}
    logs = [r for r in records if r["type"] == "LOG"]
    assert logs[0]["step"] == "PARAMETER" and logs[0]["data"]["data"] == "/d"
    assert [r["step"] for r in logs[1:]] == [[0], [1], [2], []]
    assert logs[2]["data"]["train_throughput"] == 1e6  # tensors become plain numbers
    for r in logs:
        assert {"timestamp", "datetime", "elapsedtime", "type", "step", "data"} <= set(r)
        float(r["timestamp"]), float(r["elapsedtime"])


def test_stdout_line_uses_formats_and_units() -> None:
    out = io.StringIO()
    log = JsonLogger(None, metadata=META, stdout=out)
    log.log([3], {"train_loss": 0.123456789, "train_throughput": 12345678.0})
    line = out.getvalue()
    assert line.startswith("DLL ") and "(3,)" in line
    assert "train_loss : 0.12346" in line and "train_throughput : 1.235e+07 samples/s" in line


def test_disabled_logger_writes_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    log = JsonLogger(tmp_path / "log.json", enabled=False, metadata=META, stdout=out)
    log.parameters({"a": 1})
    log.log([0], {"train_loss": 1.0})
    assert not (tmp_path / "log.json").exists() and out.getvalue() == ""


def test_non_finite_values_stay_parseable(tmp_path: Path) -> None:
    log = JsonLogger(tmp_path / "l.json", stdout=io.StringIO())
    log.log([0], {"train_loss": float("nan")})
    log.close()
    assert read_log(tmp_path / "l.json")[0]["data"]["train_loss"] == "nan"


def test_plot_writes_png_from_two_logs(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "log.json", tmp_path / "b" / "log.json"
    _write_log(a)
    _write_log(b, epochs=5)
    out = tmp_path / "curves.png"
    plot.main([str(a), str(b), "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert plot.series(b)["train_loss"][0] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_plot_rejects_a_file_that_is_not_a_log(tmp_path: Path) -> None:
    _write_log(tmp_path / "ok.json")
    bad = tmp_path / "x.json"
    bad.write_text("hello\n")
    with pytest.raises(InputError, match="no per-step DLLL records"):
        plot.main([str(bad), "--out", str(tmp_path / "o.png")])
    bad.write_text("DLLL {broken\n" + (tmp_path / "ok.json").read_text())
    with pytest.raises(InputError, match=r"x\.json:1: not a valid DLLL record"):
        plot.main([str(bad), "--out", str(tmp_path / "o.png")])
    with pytest.raises(InputError, match=f"log file {tmp_path / 'missing.json'} does not exist"):
        plot.main([str(tmp_path / "missing.json")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.json", "x.json"]  # no PNG


def test_plot_help_documents_its_arguments(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        plot.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert (
        e.value.code == 0
        and "python -m common.plot [-h] [--config CONFIG] [--out OUT] logs [logs ...]" in out
    )
    assert "logs DLLogger JSON log files (DLLL lines) (one or more; required)" in out
    assert "--out OUT PNG to write (default: curves.png)" in out


def test_append_keeps_the_earlier_records(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    first = JsonLogger(path, stdout=io.StringIO())
    first.log([0], {"loss": 1.0})
    first.close()
    resumed = JsonLogger(path, stdout=io.StringIO(), append=True)
    resumed.log([1], {"loss": 0.5})
    resumed.close()
    assert [r["step"] for r in read_log(path) if r["type"] == "LOG"] == [[0], [1]]


def test_cut_off_last_line_is_skipped_with_a_warning_and_plot_still_draws(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    log = JsonLogger(path, stdout=io.StringIO())
    log.log([0], {"loss": 1.0})
    log.log([1], {"loss": 0.5})
    log.close()
    whole = path.read_text()
    path.write_text(whole[: len(whole) - 20])  # killed mid-write
    with pytest.warns(UserWarning, match=r"log\.json:\d+: skipping a cut-off last record"):
        assert plot.main([str(path), "--out", str(tmp_path / "c.png")]) == {"logs": 1.0}
    assert (tmp_path / "c.png").stat().st_size > 0
    path.write_text("DLLL {broken\n" + whole)
    with pytest.raises(ValueError, match=r"log\.json:1: not a valid DLLL record"):
        read_log(path)


def test_empty_log_path_means_no_file_and_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    for empty in ("", Path("")):
        log = JsonLogger(empty, stdout=io.StringIO())
        log.log([0], {"loss": 1.0})
        log.close()
    with pytest.raises(ValueError, match="is a directory; give a file name"):
        JsonLogger(tmp_path, stdout=io.StringIO())
