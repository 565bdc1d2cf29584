"""`model info|history|export|generate`: the chain's global model (PROTOCOL §6, docs/cli.md).

Owns: which RPCs each command calls (`getmodelinfo`, `getversionhistory`, `exportmodel`,
`generatetext`) and how the answer is shown. The `--json model history` contract: a list of
{"version", "height", "round", "adapter_hash", "units", "score_micro", "previous_score_micro",
"noop"}, oldest first (the node's `getversionhistory` unchanged). Must not: import the training
package or the daemon (the node's worker exports and generates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from linguachain_cli.app import App, pass_app
from linguachain_cli.output import kv, table


@click.group()
def model() -> None:
    """The global model: current version, history, export, text generation."""


@model.command("info")
@pass_app
def model_info(app: App) -> None:
    """The current global version: number, id, adapter hash, score, round, height, base model."""
    info = app.call("getmodelinfo")

    def human() -> None:
        base = info.get("base_model") or {}
        rows: list[tuple[str, Any]] = [(k, v) for k, v in info.items() if not isinstance(v, dict)]
        rows += [(f"base {k}", v) for k, v in base.items()]
        kv("global model", rows)

    app.out(info, human)


@model.command("history")
@click.option("--improved", is_flag=True, help="only versions that changed the adapter")
@pass_app
def model_history(app: App, improved: bool) -> None:
    """Every VERSION block, oldest first: units aggregated, new and previous score, no-op or not."""
    history: list[dict[str, Any]] = app.call("getversionhistory")
    if improved:
        history = [v for v in history if not v["noop"]]
    columns = ["version", "height", "round", "units", "score", "previous", "noop", "adapter"]

    def row(v: dict[str, Any]) -> list[Any]:
        def loss(micro: int) -> str | None:
            return f"{micro / 1e6:.4f}" if micro else None

        score, prev = loss(v["score_micro"]), loss(v["previous_score_micro"])
        return [
            v["version"],
            v["height"],
            v["round"],
            v["units"],
            score,
            prev,
            v["noop"],
            v["adapter_hash"][:16],
        ]

    app.out(
        history,
        lambda: table(
            "model versions (scores: mean test loss, lower is better)", columns, [row(v) for v in history]
        ),
    )


@model.command("export")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--merged", is_flag=True, help="also a full model (base + adapter) in OUT/merged")
@pass_app
def model_export(app: App, out_dir: Path, merged: bool) -> None:
    """Write the current global version as a PEFT adapter directory (the worker's export; the node
    writes OUT on its machine), loadable with PeftModel.from_pretrained(base, OUT)."""
    result = app.call("exportmodel", str(out_dir.expanduser().absolute()), merged)
    app.out(result, lambda: kv(f"exported version {result['version']}", list(result.items())))


@model.command("generate")
@click.argument("prompt")
@click.option("--max-tokens", type=int, default=64, show_default=True)
@pass_app
def model_generate(app: App, prompt: str, max_tokens: int) -> None:
    """Greedy text after PROMPT from the base model plus the current global adapter."""
    result = app.call("generatetext", prompt, max_tokens)
    app.out(result, lambda: click.echo(result["text"]))
