"""Build `lc-tiny`, the shipped pretrained base model (PROTOCOL §6.1): corpus, tokenizer, training, card.

    nice -n 10 .venv/bin/python scripts/build_lc_tiny.py --out /tmp/lc_tiny  # 12.4 CPU-minutes
    nice -n 10 .venv/bin/python scripts/build_lc_tiny.py --out /tmp/x --steps 5 --eval-windows 2  # smoke

Owns: the corpus (docstrings of the running Python's standard library plus the documentation topics of
`pydoc_data.topics`, all under the PSF licence), its held-out split (whole modules, chosen by hash of
the module name), the byte-level tokenizer (id = byte value, then `<s>`, `</s>`, `<pad>`), the LLaMA
configuration, a seeded AdamW training loop, the losses (train, held-out, another domain), an optional
LoRA adaptation check with frozen A matrices, the loss-curve figures and `build_record.json` (every
figure that the model card, training/lc_tiny/README.md, quotes). Writes a Hugging Face model
directory that `AutoModelForCausalLM` / `AutoTokenizer` load offline.
Must not: be imported by the daemon (it imports torch); write into the repository unless told to
(`--out`); ship the other-domain text (it is only measured). CPU training is not bit-reproducible
across machines, which is why the weights file is committed rather than rebuilt (PROTOCOL §6.1).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import json
import math
import platform
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

BOS, EOS, PAD = 256, 257, 258
VOCAB_SIZE = 259
CONTEXT = 512
HELD_OUT_BUCKETS = 20  # one module in 20 (by hash of its name) is held out
OTHER_DOMAIN = Path("/usr/share/common-licenses/GPL-3")
OTHER_DOMAIN_LABEL = "GNU GPL v3 text (/usr/share/common-licenses/GPL-3, Debian base-files)"


# ---- corpus ---------------------------------------------------------------------------------------


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_modules(root: Path) -> list[tuple[str, Path]]:
    """(dotted module name, path) of every stdlib source file, sorted, without tests and site-packages."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        parts = rel.parts
        if parts[0] in {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3"} or any(
            p in {"test", "tests", "__pycache__"} or p.startswith("test_") for p in parts
        ):
            continue
        out.append((".".join(rel.with_suffix("").parts), path))
    return out


def module_docstrings(path: Path) -> list[str]:
    """The cleaned docstrings of a module, its classes and functions, in source order."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError):
        return []
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= 24:
                docs.append(doc)
    return docs


def is_held_out(name: str) -> bool:
    """True for the modules (and pydoc topics) of the held-out slice: a fixed hash bucket of the name."""
    return hashlib.blake2b(name.encode(), digest_size=8).digest()[0] % HELD_OUT_BUCKETS == 0


def pydoc_topics() -> list[tuple[str, str]]:
    """(topic name, text) of the Python documentation shipped as `pydoc_data.topics` (PSF licence)."""
    from pydoc_data.topics import topics

    return sorted((f"pydoc_data:{k}", inspect.cleandoc(v)) for k, v in topics.items())


@dataclass(frozen=True, slots=True)
class Corpus:
    train: list[str]
    held_out: list[str]
    held_out_names: list[str]


def build_corpus(root: Path) -> Corpus:
    """Deduplicated documents split by module name; order is deterministic (sorted sources)."""
    seen: set[str] = set()
    train: list[str] = []
    held: list[str] = []
    held_names: list[str] = []
    sources: list[tuple[str, list[str]]] = [(n, module_docstrings(p)) for n, p in stdlib_modules(root)]
    sources += [(n, [t]) for n, t in pydoc_topics()]
    for name, docs in sources:
        fresh = [d for d in docs if d not in seen]
        seen.update(fresh)
        if not fresh:
            continue
        if is_held_out(name):
            held.extend(fresh)
            held_names.append(name)
        else:
            train.extend(fresh)
    return Corpus(train, held, held_names)


def encode_docs(docs: Sequence[str]) -> torch.Tensor:
    """One token stream: `<s>` + UTF-8 bytes + `</s>` per document."""
    ids: list[int] = []
    for doc in docs:
        ids.append(BOS)
        ids.extend(doc.encode("utf-8"))
        ids.append(EOS)
    return torch.tensor(ids, dtype=torch.long)


# ---- tokenizer and model --------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what the ByteLevel pre-tokenizer uses)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = list(bs)
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level: token id = byte value (0-255), `<s>`=256 (prepended), `</s>`=257, `<pad>`=258."""
    b2u = bytes_to_unicode()
    tok = Tokenizer(models.BPE(vocab={b2u[b]: b for b in range(256)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True) for t in ("<s>", "</s>", "<pad>")])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS)]
    )
    assert [tok.token_to_id(t) for t in ("<s>", "</s>", "<pad>")] == [BOS, EOS, PAD]
    # split_special_tokens: a literal "</s>" in user text stays bytes, never becomes a control token.
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=CONTEXT,
        split_special_tokens=True,
    )


@dataclass(frozen=True, slots=True)
class Hyper:
    seed: int = 1337
    layers: int = 4
    hidden: int = 256
    heads: int = 4
    intermediate: int = 768
    steps: int = 600
    batch: int = 4
    seq: int = CONTEXT
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_windows: int = 8
    threads: int = 2


DEFAULT = Hyper()


def llama_config(h: Hyper) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=h.hidden,
        intermediate_size=h.intermediate,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        num_key_value_heads=h.heads,
        max_position_embeddings=CONTEXT,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        tie_word_embeddings=False,
    )


# ---- training -------------------------------------------------------------------------------------


def lr_at(h: Hyper, step: int) -> float:
    if step < h.warmup:
        return h.lr * (step + 1) / h.warmup
    frac = (step - h.warmup) / max(1, h.steps - h.warmup)
    return h.lr * (h.min_lr_ratio + (1 - h.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def windows(stream: torch.Tensor, seq: int, limit: int) -> torch.Tensor:
    """Non-overlapping windows of `seq` tokens from the start of `stream` (at most `limit`)."""
    n = min(limit, stream.numel() // seq)
    return stream[: n * seq].view(n, seq)


@torch.no_grad()
def mean_loss(model: LlamaForCausalLM, batches: torch.Tensor, batch: int = 8) -> float:
    """Token-weighted mean next-token loss (nats per byte) over `batches` (rows of token ids)."""
    model.eval()  # type: ignore[no-untyped-call]
    total, count = 0.0, 0
    for i in range(0, batches.shape[0], batch):
        x = batches[i : i + batch]
        loss = model(input_ids=x, labels=x).loss
        n = x.numel() - x.shape[0]
        total += float(loss) * n
        count += n
    model.train()
    return total / count


def unigram_loss(train: torch.Tensor, test: torch.Tensor) -> float:
    """Cross-entropy of `test` under the add-one unigram distribution of `train` (the 'no context' level)."""
    counts = torch.bincount(train, minlength=VOCAB_SIZE).double() + 1.0
    logp = torch.log(counts / counts.sum())
    return float(-logp[test].mean())


@dataclass
class Record:
    hyper: dict[str, Any]
    params: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, train loss of the batch)
    evals: list[tuple[int, float, float]] = field(default_factory=list)  # (step, held-out, other domain)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def train(model: LlamaForCausalLM, stream: torch.Tensor, evals: dict[str, torch.Tensor], h: Hyper) -> Record:
    rec = Record(asdict(h), params=sum(p.numel() for p in model.parameters()))
    gen = torch.Generator().manual_seed(h.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": h.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=h.lr,
        betas=(0.9, 0.95),
    )
    start = time.monotonic()
    for step in range(h.steps):
        if step % h.eval_every == 0:
            _evaluate(model, evals, step, rec, start)
        starts = torch.randint(0, stream.numel() - h.seq, (h.batch,), generator=gen)
        x = torch.stack([stream[s : s + h.seq] for s in starts.tolist()])
        for g in opt.param_groups:
            g["lr"] = lr_at(h, step)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), h.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        rec.curve.append((step, loss.item()))
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.4f} {time.monotonic() - start:.0f}s", flush=True)
    _evaluate(model, evals, h.steps, rec, start)
    rec.seconds = time.monotonic() - start
    return rec


def _evaluate(
    model: LlamaForCausalLM, evals: dict[str, torch.Tensor], step: int, rec: Record, t0: float
) -> None:
    held, other = mean_loss(model, evals["held_out"]), mean_loss(model, evals["other"])
    rec.evals.append((step, held, other))
    print(
        f"eval step {step}: held-out {held:.4f} other-domain {other:.4f} {time.monotonic() - t0:.0f}s",
        flush=True,
    )


# ---- LoRA adaptation check ------------------------------------------------------------------------


def lora_check(model_dir: Path, text: bytes, h: Hyper, steps: int = 80) -> dict[str, Any]:
    """FFA-LoRA in miniature: r=8 on q/k/v/o with A frozen, train B on the first half of `text`,
    measure the loss on the second half before and after. Shows the base is adaptable."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(h.seed)
    base = LlamaForCausalLM.from_pretrained(model_dir)
    cfg = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0
    )
    model = get_peft_model(base, cfg)
    for name, p in model.named_parameters():
        if "lora_A" in name:
            p.requires_grad_(False)
    half = len(text) // 2
    fit = torch.tensor([BOS, *text[:half]], dtype=torch.long)
    test = windows(torch.tensor([BOS, *text[half:]], dtype=torch.long), 256, 64)
    before = mean_loss(model, test)  # type: ignore[arg-type]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(h.seed)
    curve = []
    for step in range(steps):
        starts = torch.randint(0, fit.numel() - 256, (4,), generator=gen)
        x = torch.stack([fit[s : s + 256] for s in starts.tolist()])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        curve.append((step, loss.item()))
    after = mean_loss(model, test)  # type: ignore[arg-type]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"lora check: held-back half {before:.4f} -> {after:.4f} after {steps} steps", flush=True)
    return {"steps": steps, "before": before, "after": after, "trainable": trainable, "curve": curve}


# ---- outputs --------------------------------------------------------------------------------------


def plot(rec: Record, out: Path, unigram: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    steps = [s for s, _ in rec.curve]
    losses = [v for _, v in rec.curve]
    k = 20
    smooth = [sum(losses[max(0, i - k + 1) : i + 1]) / min(i + 1, k) for i in range(len(losses))]
    ax.plot(steps, losses, color="#c8d6e5", lw=0.8, label="train (batch)")
    ax.plot(steps, smooth, color="#2e86de", lw=1.6, label=f"train ({k}-step mean)")
    ax.plot(
        [e[0] for e in rec.evals],
        [e[1] for e in rec.evals],
        "o-",
        color="#10ac84",
        label="held-out stdlib docs",
    )
    ax.plot(
        [e[0] for e in rec.evals],
        [e[2] for e in rec.evals],
        "s-",
        color="#ee5253",
        label="other domain (GPL-3 text)",
    )
    ax.axhline(math.log(256), color="grey", ls=":", lw=1, label="uniform over bytes (ln 256)")
    ax.axhline(unigram, color="grey", ls="--", lw=1, label="unigram (held-out)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per byte)")
    ax.set_title("lc-tiny pretraining")
    ax.set_ylim(0, 6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loss_curve.png")
    plt.close(fig)
    lora = rec.extra.get("lora")
    if lora:
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
        ax.plot(
            [s for s, _ in lora["curve"]],
            [v for _, v in lora["curve"]],
            color="#2e86de",
            label="train (batch)",
        )
        ax.axhline(
            lora["before"], color="#ee5253", ls="--", label=f"held-back half, before ({lora['before']:.2f})"
        )
        ax.axhline(
            lora["after"], color="#10ac84", ls="--", label=f"held-back half, after ({lora['after']:.2f})"
        )
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats per byte)")
        ax.set_title("FFA-LoRA (r=8, A frozen) on lc-tiny: GPL-3 text")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "lora_check.png")
        plt.close(fig)


def save_model(model: LlamaForCausalLM, out: Path) -> None:
    model.config.use_cache = True
    model.generation_config.bos_token_id = BOS
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = PAD
    model.save_pretrained(out, safe_serialization=True)
    build_tokenizer().save_pretrained(out)


def corpus_summary(c: Corpus, root: Path) -> dict[str, Any]:
    train_bytes = sum(len(d.encode()) + 2 for d in c.train)
    held_bytes = sum(len(d.encode()) + 2 for d in c.held_out)
    digest = hashlib.sha256("\x00".join([*c.train, "\x01", *c.held_out]).encode()).hexdigest()
    return {
        "stdlib": str(root),
        "python": platform.python_version(),
        "train_docs": len(c.train),
        "train_tokens": train_bytes,
        "held_out_docs": len(c.held_out),
        "held_out_tokens": held_bytes,
        "held_out_sources": c.held_out_names,
        "sha256": digest,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, required=True, help="model directory to write (created)")
    ap.add_argument("--steps", type=int, default=DEFAULT.steps)
    ap.add_argument("--eval-windows", type=int, default=DEFAULT.eval_windows)
    ap.add_argument("--seed", type=int, default=DEFAULT.seed)
    ap.add_argument("--threads", type=int, default=DEFAULT.threads)
    ap.add_argument("--lora-steps", type=int, default=80, help="LoRA adaptation check steps (0: skip)")
    args = ap.parse_args(argv)
    h = Hyper(
        steps=args.steps,
        eval_windows=args.eval_windows,
        seed=args.seed,
        threads=args.threads,
        eval_every=max(1, min(DEFAULT.eval_every, args.steps // 4)),
    )
    torch.set_num_threads(h.threads)
    torch.manual_seed(h.seed)
    root = stdlib_dir()
    corpus = build_corpus(root)
    stream = encode_docs(corpus.train)
    held = encode_docs(corpus.held_out)
    other_text = OTHER_DOMAIN.read_bytes()
    other = torch.tensor([BOS, *other_text, EOS], dtype=torch.long)
    evals = {"held_out": windows(held, h.seq, h.eval_windows), "other": windows(other, h.seq, h.eval_windows)}
    print(
        f"corpus: {len(corpus.train)} train docs ({stream.numel()} tokens), {len(corpus.held_out)} held out "
        f"({held.numel()} tokens); eval {evals['held_out'].numel()} + {evals['other'].numel()} tokens",
        flush=True,
    )
    model = LlamaForCausalLM(llama_config(h))
    rec = train(model, stream, evals, h)
    args.out.mkdir(parents=True, exist_ok=True)
    save_model(model, args.out)
    rec.extra["corpus"] = corpus_summary(corpus, root)
    rec.extra["unigram_held_out"] = unigram_loss(stream, held)
    rec.extra["unigram_other"] = unigram_loss(stream, other)
    rec.extra["final_train_mean_last_50"] = sum(v for _, v in rec.curve[-50:]) / len(rec.curve[-50:])
    rec.extra["full_held_out"] = mean_loss(model, windows(held, h.seq, 32))
    rec.extra["full_other"] = mean_loss(model, windows(other, h.seq, 32))
    rec.extra["host"] = {"torch": torch.__version__, "threads": h.threads, "machine": platform.machine()}
    if args.lora_steps > 0:
        rec.extra["lora"] = lora_check(args.out, other_text, h, args.lora_steps)
    plot(rec, args.out, rec.extra["unigram_held_out"])
    (args.out / "build_record.json").write_text(json.dumps(asdict(rec), indent=1) + "\n")
    print(json.dumps({k: v for k, v in rec.extra.items() if k != "lora"}, indent=1)[:3000])
    print(f"done in {rec.seconds:.0f}s training; params {rec.params}")
    return 0


def iter_held_out_docstrings(limit: int) -> Iterator[str]:
    """Up to `limit` held-out docstrings of the running stdlib (for tests that check pretraining)."""
    count = 0
    for name, path in stdlib_modules(stdlib_dir()):
        if is_held_out(name):
            for doc in module_docstrings(path):
                yield doc
                count += 1
                if count >= limit:
                    return


if __name__ == "__main__":
    sys.exit(main())
