"""TensorBoard output: the run logger, hyper-parameters and final metrics, the sweep's HParams experiment."""
