"""`train status|start|stop`: this node's trainer (docs/learning.md "Training on a node").

Owns: which RPCs each command calls (`gettraininginfo`, `starttraining`, `stoptraining`) and the
progress line while a job runs (`--follow`, on stderr so `--json` stays clean). Must not: import
the training package or the daemon.
"""

from __future__ import annotations

import time
from typing import Any

import click

from linguachain_cli.app import App, Progress, pass_app
from linguachain_cli.output import kv

POLL_S = 1.0


def _rows(info: dict[str, Any]) -> list[tuple[str, Any]]:
    trainer, worker = info.get("trainer"), info.get("worker")
    rows: list[tuple[str, Any]] = [("base model here", info.get("base_model_available"))]
    if trainer is None:
        rows.append(("trainer", "none (set train_data in the node's [training] settings)"))
    else:
        rows += [
            ("trainer", "enabled" if trainer["enabled"] else "stopped"),
            ("state", trainer["state"]),
            ("data", trainer["data"]),
            ("step", f"{trainer['step']}/{trainer['total_steps']}"),
            ("loss", int(trainer["loss_micro"]) / 1e6),
            ("trained on version", trainer["trained_version"]),
            ("units submitted", trainer["units_submitted"]),
            ("units refused", trainer["units_refused"]),
            ("last error", trainer["last_error"] or None),
        ]
        unit = trainer.get("last_unit")
        if unit:
            rows += [("last unit", unit["unit_id"]), ("last unit outcome", unit["outcome"])]
        if trainer.get("adversary"):
            rows.append(("adversary (devnet)", trainer["adversary"]))
    if worker is not None:
        last = worker.get("last_job") or {}
        rows += [
            ("worker", worker["state"]),
            ("device", worker["device"]),
            ("model id", worker["model_id"]),
            ("tokens/s", round(float(worker["tokens_per_s"]))),
            (
                "last job",
                f"{last.get('kind')} {last.get('outcome')} {last.get('seconds')} s" if last else None,
            ),
        ]
    return rows


def follow(app: App, until_new_unit: bool, timeout: float) -> dict[str, Any]:
    """Show the trainer's progress on stderr until it is idle (or, with `until_new_unit`, until a
    unit newer than the one it had is announced), or `timeout` seconds."""
    progress = Progress(always=True)
    first = app.call("gettraininginfo")
    start_unit = ((first.get("trainer") or {}).get("last_unit") or {}).get("unit_id")
    deadline = time.monotonic() + timeout
    info = first
    try:
        while time.monotonic() < deadline:
            info = app.call("gettraininginfo")
            trainer = info.get("trainer")
            if trainer is None or not trainer["enabled"]:
                break
            unit = (trainer.get("last_unit") or {}).get("unit_id")
            busy = trainer["state"] in ("training", "submitting", "waiting_for_adapter")
            if (unit != start_unit) if until_new_unit else not busy:
                break
            step = f"step {trainer['step']}/{trainer['total_steps']}" if busy else trainer["state"]
            loss, rate = int(trainer["loss_micro"]) / 1e6, float(trainer["tokens_per_s"])
            progress.show(f"{step}, loss {loss:.4f}, {rate:.0f} tokens/s")
            time.sleep(POLL_S)
    finally:
        progress.done()
    return dict(info)


@click.group()
def train() -> None:
    """This node's training: status, start, stop."""


@train.command("status")
@click.option("--follow", "follow_job", is_flag=True, help="show progress until the job in flight ends")
@click.option("--timeout", "wait_s", type=float, default=600.0, show_default=True)
@pass_app
def train_status(app: App, follow_job: bool, wait_s: float) -> None:
    """The trainer and the training worker: state, device, model id, last job, tokens/s, last unit."""
    info = follow(app, False, wait_s) if follow_job else app.call("gettraininginfo")
    app.out(info, lambda: kv("training", _rows(info)))


@train.command("start")
@click.option("--wait", is_flag=True, help="show progress until the next unit is announced")
@click.option("--timeout", "wait_s", type=float, default=600.0, show_default=True)
@pass_app
def train_start(app: App, wait: bool, wait_s: float) -> None:
    """Let the trainer train (on the current final version if it has not yet)."""
    result = app.call("starttraining")
    if wait:
        result = follow(app, True, wait_s)
    app.out(result, lambda: kv("training", _rows(result) if wait else [("trainer", "enabled")]))


@train.command("stop")
@pass_app
def train_stop(app: App) -> None:
    """Stop the trainer; the job in flight is cancelled (the node keeps validating and scoring)."""
    result = app.call("stoptraining")
    app.out(result, lambda: click.echo("trainer stopped"))
