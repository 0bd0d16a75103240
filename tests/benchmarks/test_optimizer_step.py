"""benchmarks/optimizer_step.py: it times the loop, foreach and the project's fused AdamW
on the same parameters, and writes one row for each."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.benchmarks import load_script


def _script():
    return load_script("optimizer_step")


def test_the_three_optimizers_share_the_parameters_and_differ_in_the_kernel() -> None:
    model, optimizers = _script()._optimizers("mit-nano")
    parameters = {id(p) for p in model.parameters()}
    for optimizer in optimizers.values():
        assert {id(p) for g in optimizer.param_groups for p in g["params"]} == parameters
    flags = {name: (o.param_groups[0]["fused"], o.param_groups[0]["foreach"])
             for name, o in optimizers.items()}  # fmt: skip
    assert flags == {"loop": (None, False), "foreach": (None, True),
                     "fused (project)": (True, None)}  # fmt: skip


def test_one_row_per_variant(tmp_path: Path) -> None:
    out = tmp_path / "optimizer.csv"
    assert _script().main(["--repeats", "2", "--warmup", "0", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["variant"] for r in rows] == ["loop", "foreach", "fused (project)"]
    assert all(float(r["median_ms"]) > 0 for r in rows) and rows[0]["vs_loop"] == "1.0"
