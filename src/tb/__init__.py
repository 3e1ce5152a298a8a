"""TensorBoard output: the run logger, hyper-parameters and final metrics, the sweep's HParams experiment."""

from src.utils.quiet import quiet_third_party

quiet_third_party()  # Lightning and TensorBoard lines a normal run should not print (src/utils/quiet.py)
