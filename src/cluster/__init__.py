"""Running on a scheduler: the SLURM launcher's driver and job sides (``slurm``) and the facts a
run record keeps about where a job ran (``where``)."""
