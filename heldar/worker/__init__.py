"""The reference HTTP worker (``heldar worker``): uses only the public worker SDK contract."""

from heldar.worker.runner import Worker, WorkerOptions

__all__ = ["Worker", "WorkerOptions"]
