"""Federated training on one node (PROTOCOL §6): data files, the worker protocol and its supervisor.

Holds no code itself. Outside `training/worker/` nothing here imports torch, transformers or peft
(ARCHITECTURE.md §3): the daemon imports `training.supervisor`, which starts `python -m
training.worker` as a separate process. See docs/training.md.
"""
