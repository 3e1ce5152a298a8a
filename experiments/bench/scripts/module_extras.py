"""CPU time of what MarginClassifier.training_step adds to the bare step (batch 128, bf16 autocast, 1 thread):
the train-accuracy prediction and the device-side epoch sums.

Run from the repository root: ``PYTHONPATH=. python experiments/bench/scripts/module_extras.py`` (process CPU time, so another process on the
machine slows it down little; issue #11.3).
"""
import tempfile, time, torch
from pathlib import Path
from src.bench.common import compose_config
from src.training.pipeline import build
torch.set_num_threads(1)
cfg = compose_config(["backbone=seed_cnn", "loss=softmax", "data.batch_size=128"], Path(tempfile.mkdtemp()))
_, model = build(cfg)
labels = torch.randint(0, 10, (128,))
with torch.autocast("cpu", dtype=torch.bfloat16):
    emb = model.embed(torch.rand(128, 1, 28, 28)).detach()
    loss = model.head(emb, labels)
sums = (torch.zeros(()), torch.zeros((), dtype=torch.long))
def predict():
    with torch.no_grad():
        return (model.head.predict(emb) == labels).sum()
def accumulate(correct):
    sums[0].add_(loss.detach().float() * 128)
    sums[1].add_(correct)
for name, fn in (("predict + compare", predict), ("epoch sums", lambda: accumulate(c))):
    c = predict()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for rep in range(3):
            t = time.process_time()
            for _ in range(3000):
                fn()
            us = (time.process_time() - t) / 3000 * 1e6
    print(f"{name:<20} {us:.1f} us CPU per step")
