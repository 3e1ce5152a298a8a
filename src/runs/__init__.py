"""The run folder (``folder``: its layout, readers and writes) and the lock that keeps one
training process in it (``lock``)."""
