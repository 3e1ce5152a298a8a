"""The TensorBoard event files of one run hold what a user opens them for, under stable tags."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from src.tb.hparams import read_session_hparams
from src.training.pipeline import run


def load_events(folder: Path) -> list[EventAccumulator]:
    accs = []
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
        acc.Reload()
        accs.append(acc)
    return accs


def hparams_content(acc: EventAccumulator) -> dict[str, bytes]:
    try:
        return acc.PluginTagToContent(metadata.PLUGIN_NAME)
    except KeyError:  # this event file has no hparams summary
        return {}


def test_scalars_confusion_figures_and_hparams(tiny_config, tmp_path: Path) -> None:
    metrics = run(tiny_config("loss=arcface", "trainer.max_epochs=2"), tmp_path / "run")
    events = load_events(tmp_path / "run")
    # Event files in the run folder itself: TensorBoard's run name is the job folder, no "/tb".
    assert {p.parent for p in (tmp_path / "run").rglob("events.out.tfevents.*")} == {tmp_path / "run"}
    assert not list((tmp_path / "run").rglob("hparams.yaml"))
    scalars = {tag for acc in events for tag in acc.Tags()["scalars"]}
    images = {tag for acc in events for tag in acc.Tags()["images"]}
    for tag in ("loss_own_scale/train", "loss_own_scale/train_epoch", "loss_own_scale/val", "train/acc", "val/acc",
                "test/acc", "val/acc_macro", "test/acc_macro"):
        assert tag in scalars, tag
    # The losses (each head's own scale) only in their own group, never beside the accuracies.
    assert not {"train/loss", "train/loss_epoch", "val/loss"} & scalars
    assert "train/lr" in scalars and not [t for t in scalars if t.startswith(("lr-", "hparams/")) or t == "epoch"]
    assert {"val/confusion", "test/confusion"} <= images

    def series(tag: str, kind: str = "Scalars") -> list:
        return [e for acc in events if tag in acc.Tags()[kind.lower()] for e in getattr(acc, kind)(tag)]

    # One confusion figure per epoch, each on the step of that epoch's validation scalars.
    val_steps = [e.step for e in series("val/acc")]
    assert [img.step for img in series("val/confusion", "Images")] == val_steps and len(val_steps) == 2
    # val/acc_best: the running best of val/acc, ending on the checkpoint-selection score.
    best = [e.value for e in series("val/acc_best")]
    assert [e.step for e in series("val/acc_best")] == val_steps  # no extra end-of-run point
    assert best == [max(e.value for e in series("val/acc")[: i + 1]) for i in range(len(best))]
    assert abs(best[-1] - metrics["val_acc_best"]) < 1e-6
    assert abs(series("test/acc")[-1].value - metrics["test_acc"]) < 1e-6

    # HPARAMS: one session with typed values and no experiment record of the run's own (the sweep
    # writes the one experiment; see tests/tensorboard).
    contents = [c for c in (hparams_content(acc) for acc in events) if c]
    assert len(contents) == 1 and metadata.EXPERIMENT_TAG not in contents[0]
    hp = read_session_hparams(contents[0][metadata.SESSION_START_INFO_TAG])
    assert hp["loss"] == "arcface" and hp["loss.m"] == 0.5 and hp["loss.convention"] == "monotone"
    assert hp["backbone"] == "seed_cnn" and hp["seed"] == 0 and hp["trainer.max_epochs"] == 2
    assert hp["test"] is True and hp["compile"] is False
    assert not [k for k in hp if "_target_" in k or k.startswith(("hydra", "callbacks", "logger"))]
    assert [t for acc in events for t in acc.Tags()["tensors"] if t.startswith("summary")]  # the text summary
