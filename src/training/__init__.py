"""The training machinery behind ``python -m src.train``.

* ``pipeline``: builds data, model, callbacks and Trainer from a composed config, fits, tests once
  and runs the post-test analyses;
* ``model``: the one LightningModule for every (backbone, loss head) pair, and ``StageResults``;
* ``schedules``: the learning-rate schedules (``conf/scheduler``);
* ``run_folder``: what a command may do with the folder it is aimed at (start, resume, done);
* ``records``: the run record, ``metrics.json``;
* ``checkpointing``: atomic checkpoint files read without running pickled code;
* ``distributed``: DDP whose workers are started by multiprocessing (``trainer=ddp_cpu``).
"""
