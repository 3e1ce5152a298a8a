"""CPU time of Lightning's per-step callback dispatch with the project's callbacks (conf/callbacks),
timed inside a real fit (after batch 1 of 3, on a step that no logger reads).

Run from the repository root: ``PYTHONPATH=. python experiments/bench/scripts/callback_dispatch.py`` (process CPU time, so another process on the
machine slows it down little; issue #11.3).
"""
import tempfile, time, torch
import pytorch_lightning as pl
from pathlib import Path
from hydra.utils import instantiate
from pytorch_lightning.trainer import call
from src.bench.harness import Bench
from src.bench.common import compose_config, quiet_lightning
quiet_lightning(); torch.set_num_threads(1)
wd = Path(tempfile.mkdtemp())
cfg = compose_config(["backbone=seed_cnn", "loss=softmax", "data.batch_size=8", "threads=1"], wd)
b = Bench(cfg, "cpu", 1, 1, 1, 1, wd)

class Timer(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx != 1:
            return
        opt, loss = trainer.optimizers[0], outputs["loss"].detach()
        hooks = [("on_train_batch_start", (batch, 1)), ("on_before_zero_grad", (opt,)),
                 ("on_before_backward", (loss,)), ("on_after_backward", ()),
                 ("on_before_optimizer_step", (opt,)), ("on_train_batch_end", (outputs, batch, 1))]
        everything = [c for c in trainer.callbacks if c is not self]
        def per_step(cbs, n=2000):
            trainer.callbacks = cbs
            t = time.process_time()
            for _ in range(n):
                for h, a in hooks:
                    call._call_callback_hooks(trainer, h, *a)
            return (time.process_time() - t) / n * 1e6
        for rep in range(3):
            print(f"all {len(everything)}: {per_step(everything):.1f} us CPU per step; none: {per_step([]):.1f} us")
        for c in everything:
            print(f"  {type(c).__name__:<24} {per_step([c]) - per_step([]):.1f} us")
        trainer.callbacks = everything + [self]

cbs = [instantiate(c) for c in cfg.callbacks.values() if c is not None] + [Timer()]
loggers = [instantiate(c) for c in cfg.logger.values() if c is not None]
trainer = b.trainer(cbs, loggers, max_epochs=1, limit_train_batches=3, limit_val_batches=0, num_sanity_val_steps=0)
trainer.fit(b.fresh_model(), datamodule=b.datamodule)
print("loggers:", [type(l).__name__ for l in loggers], "log_every_n_steps", trainer.log_every_n_steps)
