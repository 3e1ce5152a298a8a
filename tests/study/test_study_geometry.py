"""Embedding geometry on hand-made embeddings with known angles."""

from __future__ import annotations

import math

import pytest
import torch

from src.analysis.geometry import class_geometry


def on_circle(
    centers_deg: list[float], offsets_deg: list[float], radius: float = 3.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points at ``center + offset`` degrees for every class center (norms vary to show they don't matter)."""
    points, labels = [], []
    for c, center in enumerate(centers_deg):
        for k, off in enumerate(offsets_deg):
            a = math.radians(center + off)
            r = radius * (1 + k)
            points.append([r * math.cos(a), r * math.sin(a)])
            labels.append(c)
    return torch.tensor(points), torch.tensor(labels)


def test_three_tight_classes_on_a_circle_meet_the_criterion() -> None:
    emb, labels = on_circle([0.0, 120.0, 240.0], [-10.0, 0.0, 10.0])
    geo = class_geometry(emb, labels, ["a", "b", "c"])
    assert geo["num_classes"] == 3
    for row in geo["classes"]:
        assert row["max_intra_deg"] == pytest.approx(20.0, abs=1e-4)
        assert row["max_to_center_deg"] == pytest.approx(10.0, abs=1e-4)
        assert row["mean_to_center_deg"] == pytest.approx(20.0 / 3, abs=1e-4)
        assert row["min_inter_deg"] == pytest.approx(120.0, abs=1e-4)
        assert row["criterion_holds"] is True
    assert geo["classes"][0]["nearest_class"] in ("b", "c")
    assert geo["max_intra_deg"] == pytest.approx(20.0, abs=1e-4)
    assert geo["min_inter_deg"] == pytest.approx(120.0, abs=1e-4)
    assert geo["criterion_holds"] is True and geo["classes_meeting_criterion"] == 3
    # Sample level: the nearest samples of two classes are 120 - 2 x 10 degrees apart.
    assert geo["min_inter_samples_deg"] == pytest.approx(100.0, abs=1e-4)
    assert geo["criterion_samples_holds"] is True


def test_wide_classes_break_the_criterion() -> None:
    emb, labels = on_circle([0.0, 120.0, 240.0], [-70.0, 0.0, 70.0])
    geo = class_geometry(emb, labels)
    assert geo["max_intra_deg"] == pytest.approx(140.0, abs=1e-4)  # > 120 between centers
    assert geo["min_inter_deg"] == pytest.approx(120.0, abs=1e-4)
    assert geo["criterion_holds"] is False and geo["classes_meeting_criterion"] == 0
    assert geo["criterion_samples_holds"] is False


def test_per_class_criterion_compares_each_class_with_its_nearest_center() -> None:
    # Class a is tight (max intra 10), b and c are 30 degrees apart and wide (max intra 40).
    emb_a, lab_a = on_circle([0.0], [-5.0, 5.0])
    emb_bc, lab_bc = on_circle([150.0, 180.0], [-20.0, 0.0, 20.0])
    geo = class_geometry(torch.cat([emb_a, emb_bc]), torch.cat([lab_a, lab_bc + 1]), ["a", "b", "c"])
    rows = {row["name"]: row for row in geo["classes"]}
    assert rows["a"]["criterion_holds"] is True and rows["a"]["min_inter_deg"] == pytest.approx(150.0, abs=1e-4)
    assert rows["b"]["criterion_holds"] is False and rows["b"]["nearest_class"] == "c"
    assert geo["criterion_holds"] is False and geo["classes_meeting_criterion"] == 1


def test_higher_dimensions_subsampling_and_edge_cases() -> None:
    # Orthogonal class directions in 5-D: 90 degrees between centers.
    eye = torch.eye(5)
    emb = torch.cat([eye[c].repeat(50, 1) * (1 + torch.rand(50, 1)) for c in range(5)])
    labels = torch.arange(5).repeat_interleave(50)
    geo = class_geometry(emb, labels, max_per_class=20)
    assert geo["min_inter_deg"] == pytest.approx(90.0, abs=1e-5)
    assert geo["max_intra_deg"] == pytest.approx(0.0, abs=1e-3)  # float64: no spurious angle at cos = 1
    assert all(row["n"] == 20 for row in geo["classes"])
    single = class_geometry(emb[:50], labels[:50])
    assert single["min_inter_deg"] is None and single["criterion_holds"] is False
    with pytest.raises(ValueError):
        class_geometry(emb, labels[:-1])
