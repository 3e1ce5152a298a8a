"""The report's provenance: which machine, commit, precision and command made each used run."""

from __future__ import annotations

import csv
from pathlib import Path

from src import report
from tests.study.fabricate import write_run

CPU = "vm x86_64 Intel(R) Xeon(R) Processor, 2 threads, cpu"
GPU = "node1 x86_64 NVIDIA H100 80GB HBM3, cuda"


def test_provenance_names_every_segment_machine_commit_and_command(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_run(sweep / "a", "softmax", None, 0, 0.93, extra={
        "precision": "bf16-mixed", "threads": 1, "wall_time_s": 600.0,
        "segments": [{"command": "python -m src.train -m experiment=study", "commit": "1111111aaaa", "machine": CPU},
                     {"command": "python -m src.train -m experiment=study", "commit": "2222222bbbb", "machine": GPU}]})
    # An old record without segments counts as one segment from its top-level fields.
    write_run(sweep / "b", "sphereface", 2.0, 1, 0.94, extra={
        "precision": "32-true", "threads": 2, "command": "python -m src.train loss=sphereface", "machine": CPU})
    write_run(sweep / "c", "softmax", None, 2, status="running", extra={"machine": "never shown"})
    out = tmp_path / "out"
    assert report.main([str(sweep), "--out", str(out)]) == 0

    text = (out / "report.md").read_text()
    section = text.split("## Provenance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| softmax") or line.startswith("| sphereface")]
    assert len(rows) == 2  # the running run is not a used run
    softmax = next(r for r in rows if r.startswith("| softmax"))
    # Machines by short name in segment order (names sorted by string: the GPU's is M1), each listed
    # once in full below the table.
    assert "| M2 + M1 |" in softmax and "1111111, 2222222" in softmax and "| bf16-mixed | 1 |" in softmax
    assert f"- **M1**: `{GPU}`" in section and f"- **M2**: `{CPU}`" in section
    assert "| 2 | 10.0 | 1 |" in softmax  # two segments, 600 s, command 1
    sphere = next(r for r in rows if r.startswith("| sphereface"))
    assert "| 32-true | 2 |" in sphere and "| 1 |" in sphere and sphere.rstrip().endswith("| 2 |")
    assert "1. `python -m src.train -m experiment=study`" in section
    assert "2. `python -m src.train loss=sphereface`" in section
    assert "never shown" not in section

    with (out / "runs.csv").open() as f:
        by_seed = {r["seed"]: r for r in csv.DictReader(f)}
    assert by_seed["0"]["machine"] == f"{CPU} + {GPU}" and by_seed["0"]["segments"] == "2"
    assert by_seed["1"]["precision"] == "32-true" and by_seed["1"]["threads"] == "2"
