"""`data submit FILE`: register JSONL test data as a data unit (PROTOCOL §3.3, docs/cli.md);
`data get BLOB_HASH --out FILE`: a blob from the node's blob store (`getblob`), hash-checked.

Owns: the local check of the file, line by line with the chain's own parser (`chain.examples`, the
same rules the node and every validator apply), before the node is asked to store and announce it
(`submitdataunit`, signed by the node's validator key). Must not: import the training package or
the daemon, or send anything when a line is bad.
"""

from __future__ import annotations

from pathlib import Path

import click

from linguachain_cli.app import App, CliError, pass_app
from linguachain_cli.output import kv


def check_jsonl(path: Path) -> tuple[int, str]:
    """(number of examples, "text" or "pair") of a valid file; `CliError` naming the first bad line."""
    from chain.examples import parse_line, split_lines

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    kinds: set[str] = set()
    lines = split_lines(data)
    for number, line in enumerate(lines, start=1):
        example = parse_line(line)
        if isinstance(example, str):
            raise CliError(f"{path} line {number}: {example}")
        kinds.add(example.kind)
    if not lines:
        raise CliError(f"{path} holds no examples")
    if len(kinds) != 1:
        raise CliError(f"{path} mixes text and prompt/completion examples (one kind per file)")
    return len(lines), kinds.pop()


@click.group()
def data() -> None:
    """Test data for the network's scoring (data units, PROTOCOL §3.3)."""


@data.command("submit")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@pass_app
def data_submit(app: App, file: Path) -> None:
    """Check FILE (JSONL: {"prompt", "completion"} or {"text"} per line) here, then have the node
    store it and announce it as a data unit (the node reads FILE: run on the node's machine)."""
    n, kind = check_jsonl(file)
    result = app.call("submitdataunit", str(file.expanduser().absolute()))
    app.out(
        result,
        lambda: kv(
            f"data unit submitted ({n} {kind} examples)",
            [(k, result[k]) for k in ("unit_id", "tx_id", "blob_hash", "n_examples", "byte_size", "format")],
        ),
    )


@data.command("get")
@click.argument("blob_hash")
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="file to write the blob to (written whole, then renamed into place)")  # fmt: skip
@pass_app
def data_get(app: App, blob_hash: str, out: Path) -> None:
    """Download the blob BLOB_HASH (a data unit, a test set, an adapter) from the node's blob store
    into --out, in pieces of at most 4 MiB (`getblob`), checked against its hash before it is kept."""
    import hashlib

    digest = hashlib.blake2b(digest_size=32)
    tmp = out.with_name(f".{out.name}.part")
    size = offset = 0
    try:
        with tmp.open("wb") as f:
            while True:
                piece = app.call("getblob", blob_hash, offset)
                raw = bytes.fromhex(piece["hex"])
                f.write(raw)
                digest.update(raw)
                offset, size = offset + len(raw), piece["size"]
                if piece["complete"] or not raw:
                    break
    except BaseException:
        tmp.unlink(missing_ok=True)  # nothing half-written is left behind
        raise
    if offset != size or digest.hexdigest() != blob_hash.lower():
        tmp.unlink(missing_ok=True)
        raise CliError(f"blob {blob_hash}: the bytes received do not match the hash (or their size)")
    tmp.replace(out)
    result = {"blob_hash": blob_hash.lower(), "size": size, "out": str(out)}
    app.out(result, lambda: kv("blob written", list(result.items())))
