"""The training worker process (`python -m training.worker`, ARCHITECTURE.md §1, §4).

Owns: the only imports of torch, transformers and peft in the project: the base model, local
training, evaluation, generation and export, served over msgpack frames (training/protocol.py).
Must not: be imported by any other package (the daemon starts it as a process through
training/supervisor.py), touch LevelDB or keys, or reach the network (`local_files_only`).
"""
