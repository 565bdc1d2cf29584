"""Federated training (PROTOCOL §6): worker protocol and supervisor arrive with the federated-learning issue.

Holds nothing yet on purpose: no module here is imported by the daemon. `training/worker/` will be the
only place that imports torch, transformers and peft (ARCHITECTURE.md §3).
"""
