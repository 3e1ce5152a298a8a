"""Running on a scheduler: the SLURM launcher's driver and job sides (``slurm``). The facts a run
record keeps about where a job ran are ``src.utils.where`` (the records sit below the launcher)."""
