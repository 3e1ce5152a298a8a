"""The training machinery behind ``python -m src.train`` and ``python -m src.evaluate``.

* ``pipeline``: builds data, model, callbacks and Trainer from a composed config, fits, tests once
  and runs the post-test analyses;
* ``validate`` (with ``trainer_checks``): the pass over a composed config that runs before any data
  is read, building each component once so that its own checks run;
* ``compose``: every resolver ``conf/`` uses, registered before a config is composed;
* ``admission``: what a command may do with the run folder it is aimed at (start, resume, done);
* ``records``: the run record, rewritten at every state change;
* ``evaluation``: a finished run re-tested from its checkpoint, without training;
* ``model``: the one LightningModule for every (backbone, loss head) pair, and ``StageResults``;
* ``schedules``: the learning-rate schedules (``conf/scheduler``);
* ``checkpointing``: atomic checkpoint files read without running pickled code;
* ``distributed``: DDP whose workers are started by multiprocessing (``trainer=ddp_cpu``);
* ``ranks``: which rank of a job started by SLURM or torchrun owns the run folder;
* ``dispatch``: Lightning's per-batch dispatch of hooks that do nothing, taken out.

The run folder's layout and readers are ``src.runs.folder``'s.
"""

from src.utils.quiet import quiet_third_party

quiet_third_party()  # Lightning and TensorBoard lines a normal run should not print (src/utils/quiet.py)
