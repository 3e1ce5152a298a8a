"""The small rules behind the TensorBoard view: job names, tags, HParams records, figure labels."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from tensorboard.plugins.hparams import api_pb2, metadata

from src.tb.final import final_scalars, summary_text
from src.tb.hparams import experiment, experiment_infos, metric_tags, read_session_hparams, session_start
from src.tb.logger import stable_tag
from src.utils.plots import confusion_figure, share_label
from src.utils.resolvers import SWEPT_ENV, job_subdir, margin_label
from src.utils.swept import sweep_keys
from tests.conftest import REPO, compose_config


def test_sweep_keys_are_the_overrides_with_several_values() -> None:
    task = ["loss=sphereface", "loss.m=2,4,6", "++data.train_subset=6000", "seed=range(3)", "hydra.verbose=true"]
    assert sweep_keys(task, None) == ["loss.m", "seed"]
    assert sweep_keys(["+x=1,2"], {"study_config": "softmax,arcface_m4", "seed": "0", "loss.s": "interval(1, 64)"}) \
        == ["x", "study_config", "loss.s"]


def test_job_folder_starts_with_what_varies_and_never_cuts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    task = ["++data.train_subset=6000", "loss=sphereface", "loss.m=2", "data.root=/x/y"]
    monkeypatch.setenv(SWEPT_ENV, "loss.m")
    assert job_subdir(0, task, "data.train_subset=6000,loss.m=2,loss=sphereface") == "0_loss.m=2"
    monkeypatch.setenv(SWEPT_ENV, "loss,loss.m")
    assert job_subdir(3, ["loss=a/b", "loss.m=4"]) == "3_loss=a-b,loss.m=4"  # one folder, in typed order
    long_value = "v" * 150
    monkeypatch.setenv(SWEPT_ENV, "a,b")
    assert job_subdir(1, [f"a={long_value}", "b=7"]) == f"1_a={long_value},b=7"  # past the old 120-char cut
    monkeypatch.delenv(SWEPT_ENV)  # keys unknown (e.g. a launcher without callbacks): all overrides, as before
    assert job_subdir(0, task, "loss.m=2,loss=sphereface") == "0_loss.m=2,loss=sphereface"


def test_margin_label_and_confusion_title_name_the_loss() -> None:
    assert margin_label({"m": 0.5, "s": 30.0, "convention": "monotone"}) == "m=0.5"
    assert margin_label({"m1": 1.0, "m2": 0.5, "m3": 0.0}) == "m1=1.0, m2=0.5, m3=0.0"
    assert margin_label({"_target_": "Softmax"}) == ""
    cfg = compose_config(["loss=sphereface", "loss.m=6"])
    assert instantiate(cfg.callbacks.confusion).title == "sphereface m=6"


def test_stable_tags() -> None:
    assert stable_tag("epoch") is None
    assert stable_tag("lr-AdamW") == stable_tag("lr-Adadelta") == "train/lr"
    assert stable_tag("lr-SGD/pg2") == "train/lr/pg2" and stable_tag("lr-SGD-momentum") == "train/momentum"
    assert stable_tag("lr-AdamW-1") == "train/lr-1"  # a second optimiser keeps its own curve
    assert stable_tag("val/acc") == "val/acc"
    # Each head's loss is on its own scale: a group of its own, never beside the accuracies.
    assert [stable_tag(t) for t in ("train/loss", "train/loss_epoch", "val/loss")] == [
        "loss_own_scale/train", "loss_own_scale/train_epoch", "loss_own_scale/val"]
    assert stable_tag("train/acc") == "train/acc"


def test_share_labels_never_round_a_count_away() -> None:
    assert share_label(1, 1000) == "<1%" and share_label(999, 1000) == ">99%"
    assert share_label(0, 1000) == "0%" and share_label(1000, 1000) == "100%" and share_label(5, 10) == "50%"


def test_confusion_figure_has_a_colour_bar_counts_and_title() -> None:
    counts = np.diag([1000, 1, 300]) + np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0]])
    fig = confusion_figure(counts, ["T-shirt/top", "Trouser", "Pullover"], "arcface m=0.5 · val, epoch 3")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert len(fig.axes) == 2  # the matrix and its colour bar
    assert "1\n100%" in texts and "300\n>99%" in texts and "1" in texts
    assert fig.axes[0].get_title().startswith("arcface m=0.5 · val, epoch 3")
    assert 350 <= fig.get_figwidth() * fig.dpi <= 450


def test_session_values_keep_their_types() -> None:
    summary = session_start({"loss": "arcface", "loss.m": 0.5, "seed": 3, "test": True})
    value = summary.value[0]
    assert value.tag == metadata.SESSION_START_INFO_TAG
    back = read_session_hparams(value.metadata.plugin_data.content)
    assert back == {"loss": "arcface", "loss.m": 0.5, "seed": 3, "test": True}
    assert type(back["seed"]) is int and type(back["test"]) is bool


def test_experiment_covers_the_union_and_marks_what_differs() -> None:
    arc = {"loss": "arcface", "loss.m": 0.5, "loss.s": 30.0, "loss.convention": "monotone", "seed": 0,
           "analysis.geometry": True, "data.batch_size": 32}
    sphere = {"loss": "sphereface", "loss.m": 4, "loss.s": 30.0, "loss.anneal": True, "seed": 0,
              "analysis.geometry": True, "data.batch_size": 32}
    infos = {i.name: i for i in experiment_infos([arc, sphere])}
    order = list(infos)
    # What differs in value first; then keys of some runs only and headline constants; constant loss.s out.
    assert order == ["loss", "loss.m", "loss.anneal", "loss.convention", "seed"]
    assert [n for n in order if infos[n].differs] == order[:2]
    assert infos["loss.anneal"].type == api_pb2.DATA_TYPE_BOOL and infos["loss"].type == api_pb2.DATA_TYPE_STRING
    assert [v.number_value for v in infos["loss.m"].domain_discrete.values] == [0.5, 4.0]
    assert metric_tags({"val/acc", "test/acc_macro", "val/acc_best", "test/acc", "test/geometry/max_intra_deg",
                        "test/retrieval/map_at_r", "test/acc_reference"}) == [
        "val/acc_best", "test/acc", "test/acc_macro", "test/acc_reference", "test/retrieval/map_at_r",
        "test/geometry/max_intra_deg"]  # a renamed leakage audit stays among the first five
    record = metadata.parse_experiment_plugin_data(experiment([arc, sphere], {"test/acc"}).value[0].metadata
                                                   .plugin_data.content)
    assert [m.name.tag for m in record.metric_infos] == ["test/acc"] and len(record.hparam_infos) == 5


def test_final_scalars_follow_the_embedding_metrics_contract() -> None:
    retrieval = {"precision_at_1": 0.9, "r_precision": 0.8, "map_at_r": 0.7, "nmi": 0.6, "ami": 0.5}
    metrics = {"val_acc_best": 0.91, "test_acc": 0.9, "retrieval": retrieval,
               "open_set": {"roc_auc": 0.8, "retrieval": {"map_at_r": 0.4, "nmi": "n/a"}}}
    scalars = final_scalars(metrics)
    assert scalars["test/retrieval/map_at_r"] == 0.7 and len([t for t in scalars if "/retrieval/" in t]) == 6
    assert scalars["test/open_set/retrieval/map_at_r"] == 0.4 and "test/open_set/retrieval/nmi" not in scalars
    assert final_scalars({"test_acc": 0.9}) == {}  # absent metrics are simply absent
    text = summary_text({"loss": "arcface", "loss.m": 0.5}, metrics)
    assert "loss=arcface loss.m=0.5" in text and "| test_acc | 0.9000 |" in text and "open-set ROC AUC" in text


def test_logger_tags_and_final_records_in_the_run_folder(tmp_path) -> None:
    from omegaconf import OmegaConf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from src.tb.final import log_final
    from src.tb.logger import RunTensorBoardLogger

    logger = RunTensorBoardLogger(str(tmp_path))
    logger.log_metrics({"train/loss": 2.0, "lr-AdamW": 1e-3, "epoch": 0}, step=1)
    logger.log_metrics({"val/acc": 0.5, "epoch": 0}, step=4)
    logger.log_metrics({"val/acc": 0.4, "epoch": 1}, step=9)
    logger.log_hyperparams({"ignored": 1})  # Lightning's own record stays out
    cfg = OmegaConf.create({"seed": 0, "loss": {"_target_": "x.ArcFace", "m": 0.5}, "logger": {"a": 1}})
    # As after a resume: the record's best (0.7) beats what this logger saw (0.5).
    log_final([logger], cfg, {"val_acc_best": 0.7, "global_step": 10, "test_acc": 0.6}, choices={"loss": "arcface"})
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["loss_own_scale/train", "train/lr", "val/acc", "val/acc_best"]
    assert [(e.step, round(e.value, 3)) for e in acc.Scalars("val/acc_best")] == [(4, 0.5), (9, 0.5), (10, 0.7)]
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    assert set(content) == {metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG}
    assert read_session_hparams(content[metadata.SESSION_START_INFO_TAG]) == {"seed": 0, "loss.m": 0.5,
                                                                              "loss": "arcface"}
    assert not list(tmp_path.glob("hparams.yaml")) and list(tmp_path.glob("events.out.tfevents.*"))


def test_screenshots_wait_until_what_tensorboard_serves_stops_changing() -> None:
    from src.tb.screenshots import wait_until_stable

    # Runs listed first, their events read one after another: the value grows, then holds.
    served = iter(["", "{a:1}", "{a:1,b:1}", "{a:1,b:5}", "{a:1,b:5}", "{a:1,b:5}", "never read"])
    reads = []

    def read() -> str:
        reads.append(next(served))
        return reads[-1]

    assert wait_until_stable(read, timeout=60, settle=3, interval=0) == "{a:1,b:5}"
    assert len(reads) == 6  # stopped as soon as three reads agreed


def test_screenshots_give_up_waiting_at_the_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    from src.tb.screenshots import wait_until_stable

    count = iter(range(10**6))
    value = wait_until_stable(lambda: str(next(count)), timeout=0.05, settle=3, interval=0.01)
    assert value.isdigit() and "still loading" in capsys.readouterr().err


def test_screenshots_without_a_logdir_say_what_to_pass(tmp_path, monkeypatch, capsys) -> None:
    """No folder named and no sweep to default to: one line naming where it looked and what to type
    (never argparse's usage message); with a sweep there, the newest one is used."""
    from src.tb.screenshots import main, newest_sweep

    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "make tb-screenshots LOGDIR=<run or sweep folder>" in lines[0], lines
    assert f"{tmp_path / 'outputs' / 'multiruns'}/" in lines[0]
    assert main([str(tmp_path / "nowhere"), "--browser", "no-such-browser-here"]) == 2
    assert "nowhere is not a folder" in capsys.readouterr().err  # the folder first, then the browser
    for name in ("2026-01-02_10-00-00_a", "2026-01-03_09-00-00_b"):
        (tmp_path / "outputs" / "multiruns" / name).mkdir(parents=True)
    assert newest_sweep() == Path("outputs/multiruns/2026-01-03_09-00-00_b")


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_tb_screenshots_without_logdir_names_what_to_pass(tmp_path) -> None:
    """``make tb-screenshots`` where no sweep exists stops before starting anything, in one line
    (``-o setup``: the virtual environment is not the point here and is never built in tmp_path)."""
    proc = subprocess.run(["make", "--no-print-directory", "-o", "setup", "-f", str(REPO / "Makefile"),
                           "tb-screenshots"], cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and not proc.stdout, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "make tb-screenshots LOGDIR=<run or sweep folder>" in lines[0], lines
    assert f"{tmp_path}/outputs/multiruns/" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing built, nothing written
