"""Real multiruns. Two sweeps start at the same moment from the same folder with
Hydra's default output layout: one of 12 tiny jobs, one of 2 jobs of which one diverges (NaN).
Each keeps its own sweep folder, every job its own run folder and record, the diverged job is
recorded as failed with its reason while the other goes on, and each sweep gets a summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.helpers import LEAN, QUICK, finish, record, start, train_command

pytestmark = pytest.mark.slow  # real sweeps of many jobs in subprocesses

SEEDS, LOSSES = [0, 1, 2, 3, 4, 5], ["softmax", "cosface"]


@pytest.fixture(scope="module")
def sweeps(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cwd = tmp_path_factory.mktemp("sweeps")  # outputs/multiruns/... is created here, as for a user
    common = [f"data.root={synthetic_root}", *QUICK, *LEAN]
    many = start(train_command("-m", f"seed={','.join(map(str, SEEDS))}", f"loss={','.join(LOSSES)}", *common), cwd)
    # One of these two jobs diverges: a NaN put into the head's weights after step 1 (a learning
    # rate large enough to do it is refused before training, issue 27.5) makes the loss NaN.
    poison = ["+callbacks.poison._target_=tests.reliability.helpers.PoisonWeight", "+callbacks.poison.step=1,1000"]
    diverging = start(train_command("-m", "optimizer=sgd", "optimizer.lr=0.01", *poison, *common), cwd)
    results = {"many": finish(many, timeout=600), "diverging": finish(diverging, timeout=600)}
    folders = sorted((cwd / "outputs" / "multiruns").iterdir())
    summaries = {f: json.loads((f / "summary.json").read_text()) for f in folders if (f / "summary.json").exists()}
    by_jobs = {s["num_jobs"]: f for f, s in summaries.items()}
    return {"results": results, "folders": folders, "many": by_jobs.get(12), "diverging": by_jobs.get(2)}


def test_exit_status_says_whether_every_job_finished(sweeps: dict[str, Any]) -> None:
    code, _, err = sweeps["results"]["many"]
    assert code == 0, err[-3000:]
    code, _, err = sweeps["results"]["diverging"]
    assert code == 1 and "1 failed, 1 finished" in err.strip().splitlines()[-1], err[-3000:]


def test_simultaneous_sweeps_get_separate_folders(sweeps: dict[str, Any]) -> None:
    assert len(sweeps["folders"]) == 2
    assert sweeps["many"] is not None and sweeps["diverging"] is not None
    assert sweeps["many"] != sweeps["diverging"]


def test_twelve_jobs_twelve_records_no_collisions(sweeps: dict[str, Any]) -> None:
    sweep = sweeps["many"]
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(jobs) == 12 and len({p.name for p in jobs}) == 12
    seen = set()
    for job in jobs:
        rec = record(job)
        assert rec["status"] == "finished" and 0.0 <= rec["test_acc"] <= 1.0, rec.get("reason")
        seen.add((rec["seed"], rec["loss"]))
        assert (job / "checkpoints" / "last.ckpt").exists()
    assert seen == {(s, loss) for s in SEEDS for loss in LOSSES}  # every combination ran exactly once


def test_summary_lists_every_job(sweeps: dict[str, Any]) -> None:
    sweep = sweeps["many"]
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["num_jobs"] == 12 and summary["counts"] == {"finished": 12} and summary["failures"] == []
    assert [j["job"] for j in summary["jobs"]] == list(range(12))
    for job in summary["jobs"]:
        assert (sweep / job["folder"] / "metrics.json").exists()
        keys = {o.split("=")[0] for o in job["overrides"]}
        assert {"seed", "loss"} <= keys
        assert job["val_acc_best"] is not None and job["test_acc"] is not None
    table = (sweep / "summary.md").read_text()
    assert sum(1 for line in table.splitlines() if line.startswith("| ") and "finished" in line) == 12


def test_diverged_job_fails_with_reason_and_the_other_finishes(sweeps: dict[str, Any]) -> None:
    sweep = sweeps["diverging"]
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["counts"] == {"finished": 1, "failed": 1}
    (failure,) = summary["failures"]
    assert "+callbacks.poison.step=1" in failure["overrides"]
    assert failure["reason"].startswith("NonFiniteError: training diverged"), failure["reason"]
    ok = next(j for j in summary["jobs"] if j["status"] == "finished")
    assert "+callbacks.poison.step=1000" in ok["overrides"] and ok["test_acc"] is not None
    failed_dir = sweep / failure["folder"]
    assert record(failed_dir)["status"] == "failed"
    assert not (failed_dir / "checkpoints" / "last.ckpt").exists()  # no diverged weights to resume from
    assert "## Failures" in (sweep / "summary.md").read_text()
    _, _, err = sweeps["results"]["diverging"]
    assert "error: job failed: NonFiniteError" in err


def test_summary_of_an_unfinished_sweep(tmp_path: Path) -> None:
    """A sweep stopped half-way (``python -m src.sweep_summary <folder>``): killed and missing jobs
    are listed as such, not dropped."""
    from src.sweep_summary import main, summarize

    for num, status in ((0, "finished"), (1, "running"), (2, None)):
        job = tmp_path / f"{num}_seed={num}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- seed={num}\n")
        if status:
            (job / "metrics.json").write_text(json.dumps({"status": status, "val_acc_best": 0.5, "test_acc": 0.4}))
    summary = summarize(tmp_path)
    assert [j["status"] for j in summary["jobs"]] == ["finished", "running", "missing"]
    assert [f["job"] for f in summary["failures"]] == [1, 2]
    killed, missing = (f["reason"] for f in summary["failures"])
    assert "killed" in killed and "ended before its run started" in missing
    main([str(tmp_path)])
    assert (tmp_path / "summary.md").read_text().count("| seed=") == 3
