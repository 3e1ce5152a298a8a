"""AUDIT ONLY: how much of a reference head's label-fed accuracy a label-free decoder recovers.

The reference's margin layers choose their decision rule by the true label (docs/reference_protocol.md).
For a finished audit run this loads ``checkpoints/last.ckpt`` and scores the test set three ways:

* label-fed: the reference's protocol (its reported kind of figure);
* plain: argmax of s cos t_j, the audit's ``audit/test_acc_label_free``;
* self-consistent: for every candidate label k, apply the rule the layer would use for k; keep the
  k whose rule picks k itself, and of several such k the one with the largest lead over the
  runner-up. No label is read.

    python experiments/reference_audit/scripts/decode_check.py experiments/reference_audit/runs/sphereface_m2_seed0
"""

from __future__ import annotations

import sys

import torch
from omegaconf import OmegaConf

from src.training.checkpointing import load_checked
from src.training.pipeline import build


def self_consistent(head: torch.nn.Module, embeddings: torch.Tensor, num_classes: int,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction, consistent mask N x C): the label-free decode described above."""
    lead = torch.full((len(embeddings), num_classes), -torch.inf)
    consistent = torch.zeros(len(embeddings), num_classes, dtype=torch.bool)
    for k in range(num_classes):
        logits = head.reference_logits(embeddings, torch.full((len(embeddings),), k, dtype=torch.long))
        top2 = logits.topk(2, dim=1).values
        consistent[:, k] = logits.argmax(1) == k
        lead[:, k] = torch.where(consistent[:, k], logits[:, k] - top2[:, 1], -torch.inf)
    return lead.argmax(1), consistent


def main(run: str) -> None:
    cfg = OmegaConf.load(f"{run}/config_resolved.yaml")
    cfg.data.root, cfg.data.fallback = None, True
    datamodule, model = build(cfg)
    model.load_state_dict(load_checked(f"{run}/checkpoints/last.ckpt")["state_dict"])
    model.eval()
    datamodule.setup("fit")  # the normalisation statistics come from the training split
    datamodule.setup("test")
    embeddings, labels = [], []
    with torch.no_grad():
        for images, y in datamodule.test_dataloader():
            embeddings.append(model.embed(images).float())
            labels.append(y)
        emb, y = torch.cat(embeddings), torch.cat(labels)
        head = model.head
        fed = (head.reference_logits(emb, y).argmax(1) == y).float().mean().item()
        plain = (head.scores(emb).argmax(1) == y).float().mean().item()
        pred, consistent = self_consistent(head, emb, head.scores(emb[:1]).shape[1])
    print(f"{run}: last.ckpt, {len(y)} test images")
    print(f"  label-fed (reference protocol)  {100 * fed:6.2f}%")
    print(f"  label-free, plain cosines       {100 * plain:6.2f}%")
    print(f"  label-free, self-consistent     {100 * (pred == y).float().mean().item():6.2f}%")
    print(f"  labels whose own rule picks them, per image: {consistent.sum(1).float().mean().item():.2f} on average")


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        main(folder)
