"""Benchmarks of asynctask against peer job queues (issue #7): ``python -m benchmarks``."""
