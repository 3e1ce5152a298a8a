"""Issue #11.3: does manual optimisation cut Lightning's own per-step cost? (Evaluated, not adopted.)

Run from the repository root (seed_cnn, softmax, batch 128, the config's precision and threads):

    PYTHONPATH=. python experiments/bench/scripts/manual_vs_automatic.py check STEPS 1 - [overrides]
    PYTHONPATH=. python experiments/bench/scripts/manual_vs_automatic.py bench STEPS REPEATS OUT.json [overrides]

check: final weights after STEPS + 5 steps of src.bench's MinimalModule (automatic optimisation) and
of the same module with manual optimisation, compared bitwise. bench: the two, each paired step by
step with its own bare loop as in ``python -m src.bench`` (interleaved), ratio = framework / bare.
"""
import json, statistics, sys, tempfile, time
from pathlib import Path
import torch, pytorch_lightning as pl
from src.bench.harness import Bench, StepClock, summarise
from src.bench.loops import MinimalModule
from src.bench.common import compose_config, quiet_lightning
from src.utils.hardware import cpu_model


class ManualMinimal(MinimalModule):
    def __init__(self, model):
        super().__init__(model)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt, sch = self.optimizers(), self.lr_schedulers()
        images, labels = batch
        loss = self.head(self.backbone(images), labels)
        opt.zero_grad()
        # Lightning runs training_step under the precision plugin's autocast; automatic optimisation
        # runs backward and the optimizer step outside it.
        with torch.autocast(self.device.type, enabled=False):
            self.manual_backward(loss)
            opt.step()
        sch.step()
        return loss


class B(Bench):
    def fit(self, variant, clock, profiler=None):
        model = self.fresh_model()
        model = ManualMinimal(model) if variant == "framework-manual" else MinimalModule(model)
        trainer = self.trainer([clock], False, max_epochs=1, limit_train_batches=self.steps + self.warmup,
                               limit_val_batches=0, num_sanity_val_steps=0)
        trainer.fit(model, datamodule=self.datamodule)
        self.last = model


def main():
    mode, steps, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    quiet_lightning()
    wd = Path(tempfile.mkdtemp())
    cfg = compose_config(["backbone=seed_cnn", "loss=softmax", "data.batch_size=128", *sys.argv[5:]], wd)
    torch.set_float32_matmul_precision(str(cfg.matmul_precision))
    b = B(cfg, "cpu", steps, 5, 1, 1, wd)
    if mode == "check":
        states = {}
        for v in ("framework-min", "framework-manual"):
            b.fit(v, StepClock(5, "cpu"))
            states[v] = {k: t.clone() for k, t in b.last.state_dict().items()}
        same = all(torch.equal(states["framework-min"][k], states["framework-manual"][k]) for k in states["framework-min"])
        print("precision", cfg.trainer.precision, "bitwise identical weights after", steps + 5, "steps:", same)
        return
    rows = []
    for r in range(repeats):
        row = {}
        for v in (("framework-min", "framework-manual") if r % 2 == 0 else ("framework-manual", "framework-min")):
            row[v], row[v.replace("framework", "bare")] = b.train_repeat(v, "interleaved", False)
        rows.append(row)
        print(f"repeat {r}: " + ", ".join(f"{k} {s.median_ips:.0f}" for k, s in sorted(row.items())), flush=True)
        out = {"setting": {"steps": steps, "warmup": 5, "repeats_done": r + 1, "cpu": cpu_model(),
                           "threads": torch.get_num_threads(), "precision": str(cfg.trainer.precision)},
               "train": summarise(rows)}
        Path(sys.argv[4]).write_text(json.dumps(out, indent=1))
    for v in ("framework-min", "framework-manual"):
        e = out["train"][v]
        print(v, "ratio", round(e["median_ratio"], 4), [round(x, 3) for x in e["ratios"]], "+ms",
              round(e["overhead_ms"], 3), [round(x, 2) for x in e["overhead_ms_per_repeat"]])


if __name__ == "__main__":
    main()
