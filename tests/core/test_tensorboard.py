"""The TensorBoard event files hold what a user opens them for."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from src.pipeline import run


def load_events(folder: Path) -> list[EventAccumulator]:
    accs = []
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
        acc.Reload()
        accs.append(acc)
    return accs


def hparams_content(acc: EventAccumulator) -> dict[str, bytes]:
    try:
        return acc.PluginTagToContent("hparams")
    except KeyError:  # this event file has no hparams summary
        return {}


def test_scalars_confusion_figures_and_hparams(tiny_config, tmp_path: Path) -> None:
    metrics = run(tiny_config("loss=arcface", "trainer.max_epochs=2"), tmp_path / "run")
    events = load_events(tmp_path / "run" / "tb")
    scalars = {tag for acc in events for tag in acc.Tags()["scalars"]}
    images = {tag for acc in events for tag in acc.Tags()["images"]}
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "test/acc", "val/acc_macro", "test/acc_macro"):
        assert tag in scalars, tag
    assert any(tag.startswith("lr-") for tag in scalars)
    assert {"val/confusion", "test/confusion"} <= images
    val_figures = [
        img for acc in events if "val/confusion" in acc.Tags()["images"] for img in acc.Images("val/confusion")
    ]
    assert len(val_figures) == 2  # one per epoch

    # HPARAMS tab: the resolved config with the run's real final metrics (not a -1 placeholder).
    contents = [hparams_content(acc) for acc in events]
    contents = [c for c in contents if c]
    assert len(contents) == 1, "expected one hparams summary"
    content = contents[0]
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = session.session_start_info.hparams
    assert hp["loss/m"].number_value == 0.5 and hp["backbone/_target_"].string_value.endswith("SeedCNN")
    final = {tag: acc.Scalars(tag)[-1].value for acc in events for tag in acc.Tags()["scalars"]
             if tag.startswith("hparams/")}
    assert abs(final["hparams/test_acc"] - metrics["test_acc"]) < 1e-6
    assert abs(final["hparams/val_acc_best"] - metrics["val_acc_best"]) < 1e-6
    assert final["hparams/test_acc"] != -1
