"""Fabricated run folders (metrics.json + config_resolved.yaml) shaped like src.training.pipeline writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def confusion(acc: float, n_per_class: int = 100, seed: int = 0) -> list[list[int]]:
    """A 10x10 matrix with about ``acc`` on the diagonal; most errors on T-shirt <-> Shirt, then
    Pullover <-> Coat, the rest spread thinly."""
    rng = np.random.default_rng(seed)
    m = np.zeros((10, 10), dtype=int)
    for c in range(10):
        errors = int(round((1 - acc) * n_per_class * (2 if c in (0, 6) else 1)))
        m[c, c] = n_per_class - errors
        partner = {0: 6, 6: 0, 2: 4, 4: 2}.get(c)
        for _ in range(errors):
            if partner is not None and rng.random() < 0.8:
                m[c, partner] += 1
            else:
                m[c, int(rng.choice([j for j in range(10) if j != c]))] += 1
    return m.tolist()


def write_run(folder: Path, loss: str = "softmax", m: float | None = None, seed: int = 0,
              test_acc: float | None = 0.90, status: str = "finished", experiment: str | None = "study",
              epochs: int = 3, extra: dict[str, Any] | None = None, config_extra: dict[str, Any] | None = None
              ) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    loss_params = {} if m is None else {"m": m}
    record: dict[str, Any] = {
        "status": status, "seed": seed, "loss": loss, "loss_params": loss_params, "backbone": "seed_cnn",
        "data": "fashion_mnist", "experiment": experiment, "name": loss, "commit": "abc", "wall_time_s": 60.0 + seed,
    }
    if status == "finished":
        acc = test_acc if test_acc is not None else 0.9
        record.update({
            "val_acc_best": acc + 0.01, "epochs": epochs, "class_names": FASHION,
            "history": [{"epoch": e, "val/acc": acc * (e + 1) / epochs, "train/loss": 1.0 / (e + 1)}
                        for e in range(epochs)],
            "test_acc_leaky": acc - 0.2, "test_acc_macro": acc,
            "test_confusion": confusion(acc, seed=seed),
        })
        if test_acc is not None:
            record["test_acc"] = test_acc
    record.update(extra or {})
    (folder / "metrics.json").write_text(json.dumps(record))
    config = {"seed": seed, "data": {"name": "fashion_mnist", "held_out_classes": [], "root": f"/data{seed}"},
              "loss": {"_target_": f"src.losses.{loss}.X", **loss_params}, "optimizer": {"lr": 1.0},
              "trainer": {"max_epochs": epochs}}
    for key, value in (config_extra or {}).items():
        section, _, name = key.partition(".")
        if name:
            config.setdefault(section, {})[name] = value
        else:
            config[section] = value
    import yaml

    (folder / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    return folder
