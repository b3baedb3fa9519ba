"""Clinical task library: generators and loaders that produce cases in the rollout format."""

from .base import TaskInfo, UnknownNameError, get_task, list_tasks, register_task

__all__ = ["TaskInfo", "UnknownNameError", "get_task", "list_tasks", "register_task"]
