"""The model and the run sized to the corpus: how many tokens per parameter, how many epochs, whether the vocabulary
suits the corpus (`data_fit`, with warnings and a suggested fix), and the spec a corpus of a given size should
start from (`size_for`, what `lmwright init --data` writes).

The anchor is the built-in project, measured (benchmarks/RESULTS.md): 400,249 training tokens (pydocs, vocabulary
4,096 at 3.77 bytes per token) for a 2.41M-parameter model (4 layers x 192) trained 700 steps of 8 x 256 tokens,
~3.6 epochs, reaching 1.64 validation bits per byte in ~5 minutes on 2 CPU cores. That is 0.17 training tokens per
parameter, far below Chinchilla's compute-optimal ~20 (Hoffmann et al. 2022, "Training Compute-Optimal Large
Language Models", arXiv:2203.15556): at this size an embedding is a third of the weights, and a laptop's minutes
buy ~1.4M tokens, so 20 tokens per parameter would mean a 70k-parameter model. The ladder below therefore keeps the
default's ratio for corpora up to its size, and grows the model more slowly than the corpus above it, which moves
the ratio towards Chinchilla's as data stops being the limit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from lmwright.model.config import ModelConfig
from lmwright.model.plan import flops_per_token
from lmwright.spec import TrainSpec

CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: compute-optimal training tokens per parameter

# the measured default (module docstring): its corpus, model and run
DEFAULT_TRAIN_TOKENS = 400_249
DEFAULT_SHAPE = (4, 192, 4, 2)  # n_layers, d_model, n_heads, n_kv_heads
DEFAULT_VOCAB = 4096
DEFAULT_STEPS, DEFAULT_BATCH, DEFAULT_SEQ = 700, 8, 256
BYTES_PER_TOKEN = 3.8  # the default tokenizer on English prose and docs (3.69-3.77 measured on pydocs)

# Shapes, each ~1.5-3x the parameters of the one below: head size 32-80 (even, for RoPE), grouped-query attention
# as in the default. 2 x 64 is the smallest: the smallest corpus measured below already did best at it.
LADDER: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 2, 1), (2, 96, 2, 1), (3, 128, 4, 2), DEFAULT_SHAPE, (5, 224, 4, 2), (6, 256, 4, 2),
    (8, 320, 4, 2), (8, 384, 6, 2), (10, 512, 8, 4), (12, 640, 10, 5), (12, 768, 12, 6),
)

# Measured on a documentation corpus like issue 21's (the READMEs of 229 installed packages, `prose` profile: 46
# training documents, 23,866 tokens at vocabulary 4,096), validation bits per byte after `lmwright run --until
# pretrain` on 2 CPU cores:
#   the default model (2.41M params), 150 steps (12.9 epochs): best 3.006 at 6.4 epochs, then rising to 3.142 at the
#   end (training loss 1.99 nats against 6.21 validation): it memorises the corpus.
#   2 x 64 and 2 x 96 (0.16M and 0.30M params) at vocabulary 1,024: 2.900 and 2.884 after 200 steps (11.9 epochs),
#   still falling; 2 x 64 for 400 steps (23.8 epochs): best 2.941 at 9.5 epochs, 3.114 at the end.
#   At vocabulary 512: 2 x 64 3.119, 3 x 128 3.187, 4 x 192 3.181 (200 steps); at 2,048: 2 x 64 2.940.
#   What size_for gives for 23,866 tokens (2 x 64, vocabulary 1,024, 170 steps: 10.1 epochs of its 34,357 tokens):
#   3.002, the oversized run's best without its memorising, in 1/14 of the parameters.
# So a corpus this small wants a model ~15x smaller than the default, a vocabulary of ~1,000 and ~10 epochs; and an
# oversized model overfits after far fewer epochs than a sized one.
#
# Epochs: Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models", arXiv:2305.16264) find up to ~4
# epochs of repeated data nearly as good as fresh data, returns falling after and gone by ~16. Runs are sized to
# 3.5 epochs (the default's 3.6), but a small corpus gets at least MIN_STEPS steps up to MAX_EPOCHS (the sized
# model above gained to ~12 epochs and had overfitted by 24). More than MAX_EPOCHS is warned about, and more than
# Muennighoff's 4 when the model is oversized for its corpus (under MIN_TOKENS_PER_PARAM: the one above peaked at 6.4).
TARGET_EPOCHS = 3.5
MAX_EPOCHS = 12.0
MAX_EPOCHS_OVERSIZED = 4.0
MIN_STEPS = 200  # what a small corpus gets (within MAX_EPOCHS): fewer steps left the small models above undertrained
FLOOR_STEPS = 50  # never fewer: hardly past warmup
# Tokens per parameter: the default runs at 0.17; warn 3x below that (the ladder's rungs are ~2x apart, so a sized
# model never lands there): the default model on the corpus above sat at 0.010.
MIN_TOKENS_PER_PARAM = 0.05
# Vocabulary: sized to one entry per 16 training tokens (counted at the default vocabulary; the default corpus has
# 98, the corpus above did best at 1,024 for 23,866), within VOCAB_RANGE and at most ~24 x d_model entries so the
# embedding does not outgrow the network (the default: 4,096 at 192). A trained vocabulary with fewer than 8 tokens
# per entry is warned about: most entries are then rare words merged whole (min_frequency 2 makes a word seen twice
# one token), whose embeddings barely train. 512: 256 byte tokens plus merges, the smallest worth training.
TOKENS_PER_VOCAB_ENTRY = 16
MIN_TOKENS_PER_VOCAB_ENTRY = 8
VOCAB_RANGE = (512, 8192)
# A vocabulary other than the default's cuts the same text into more (smaller) or fewer tokens: training tokens
# relative to vocabulary 4,096, measured on the READMEs above (512, 1,024, 2,048) and on pydocs (1,024: 1.41, 8,192)
TOKENS_AT_VOCAB = {512: 1.88, 1024: 1.42, 2048: 1.17, 4096: 1.0, 8192: 0.91}
# Early stopping and the overfitting check need evaluations to compare: sized runs evaluate ~7 times (the
# default: every 100 of 700 steps).
EVALUATIONS = 7

# Compute: the default run's training FLOPs, and the budgets size_for keeps a run in. Laptop: 3x the default,
# ~15 minutes of pretraining on 2 CPU cores (the default takes ~5), a few on a recent laptop's cores. GPU: ~10
# minutes of one H100-class GPU at ~30% of its bf16 peak.
DEFAULT_RUN_FLOPS = flops_per_token(ModelConfig(vocab_size=DEFAULT_VOCAB, n_layers=4, d_model=192, n_heads=4,
                                                n_kv_heads=2, ffn_dim=512), DEFAULT_SEQ) \
    * DEFAULT_STEPS * DEFAULT_BATCH * DEFAULT_SEQ
LAPTOP_FLOPS = 3 * DEFAULT_RUN_FLOPS
GPU_FLOPS = 0.3 * 990e12 * 600
# a model must see at least this many tokens per parameter within the budget (the default sees 0.59)
MIN_SEEN_PER_PARAM = 0.5


def shape_config(shape: tuple[int, int, int, int], vocab_size: int, seq_len: int = DEFAULT_SEQ) -> ModelConfig:
    """A ladder rung as a model config (SwiGLU width as the spec derives it: 8/3 x d_model, up to a multiple of 64)."""
    n_layers, d, heads, kv = shape
    return ModelConfig(vocab_size=vocab_size, n_layers=n_layers, d_model=d, n_heads=heads, n_kv_heads=kv,
                       ffn_dim=64 * -(-(8 * d // 3) // 64), max_seq_len=seq_len)


def target_params(train_tokens: int) -> float:
    """The parameters a corpus supports: the default's ratio (~6 parameters per token) up to its corpus size, then
    growing with the square root of the corpus (params and tokens grow together once data is not the limit)."""
    per_token = shape_config(DEFAULT_SHAPE, DEFAULT_VOCAB).n_params() / DEFAULT_TRAIN_TOKENS  # 2,410,176 / 400,249
    if train_tokens <= DEFAULT_TRAIN_TOKENS:
        return per_token * train_tokens
    return per_token * DEFAULT_TRAIN_TOKENS * math.sqrt(train_tokens / DEFAULT_TRAIN_TOKENS)


def sized_vocab(train_tokens: int) -> int:
    """The largest power of two with >= TOKENS_PER_VOCAB_ENTRY training tokens per entry, within VOCAB_RANGE."""
    v = 2 ** int(math.log2(max(1, train_tokens / TOKENS_PER_VOCAB_ENTRY)))
    return min(max(v, VOCAB_RANGE[0]), VOCAB_RANGE[1])


def suggest_shape(train_tokens: int, vocab_size: int = DEFAULT_VOCAB) -> tuple[int, int, int, int]:
    """The rung whose parameters (at this vocabulary) are nearest, in ratio, to what the corpus supports. size_for
    compares at the default's vocabulary, so that a corpus's rung never falls where its own vocabulary grows."""
    want = target_params(train_tokens)
    return min(LADDER, key=lambda s: abs(math.log(shape_config(s, vocab_size).n_params() / want)))


def _vocab_for(vocab: int, shape: tuple[int, int, int, int]) -> int:
    """The embedding should not outgrow the network: at most ~24 x d_model entries (the default: 4,096 at 192)."""
    return min(vocab, max(VOCAB_RANGE[0], 2 ** int(math.log2(24 * shape[1]))))


def _nice(n: float, down: bool = False) -> int:
    """Round a step count to a number a person would write: multiples of 50 from 200, of 10 from 50, else 5."""
    unit = 50 if n >= 200 else 10 if n >= 50 else 5
    return max(unit, int(n // unit if down else round(n / unit)) * unit)


def _cadence(steps: int) -> dict[str, int]:
    every = max(5, _nice(steps / EVALUATIONS, down=True))
    return {"train.eval_every": every, "train.checkpoint_every": max(5, every // 2 // 5 * 5),
            "train.warmup_steps": max(5, int(round(steps * 30 / DEFAULT_STEPS / 5)) * 5)}


def tokens_from_bytes(n_bytes: int) -> int:
    """A training-token estimate for a corpus of this many UTF-8 bytes, before a tokenizer exists (a smaller
    vocabulary than the default's makes more tokens: the estimate errs towards a smaller model and fewer steps)."""
    return int(n_bytes / BYTES_PER_TOKEN)


def epoch_steps(train_tokens: int, batch_size: int, seq_len: int, epochs: float = TARGET_EPOCHS) -> int:
    """Steps for ~`epochs` passes over the training split, rounded (at least one unit)."""
    return _nice(epochs * train_tokens / (batch_size * seq_len))


def sized_steps(train_tokens: int, batch_size: int, seq_len: int) -> int:
    """Steps for a training split of this many tokens: TARGET_EPOCHS, but at least MIN_STEPS as long as that stays
    within MAX_EPOCHS, and never fewer than FLOOR_STEPS."""
    within = _nice(MAX_EPOCHS * train_tokens / (batch_size * seq_len), down=True)
    return max(FLOOR_STEPS, epoch_steps(train_tokens, batch_size, seq_len), min(MIN_STEPS, within))


def tokens_at_vocab(default_tokens: int) -> float:
    """Training tokens at the vocabulary sized for the corpus, from a count at the default's: TOKENS_AT_VOCAB
    interpolated over log2 of the unrounded size (tokens / TOKENS_PER_VOCAB_ENTRY), so that it grows with the
    corpus; the vocabulary size_for picks is that size or smaller, so the run has at least this many tokens (above
    the default's size the count is kept: a larger vocabulary, for the wide models of a large budget, has ~9% fewer
    tokens, and its run then makes ~9% more epochs than planned, well within MAX_EPOCHS)."""
    want = min(max(default_tokens / TOKENS_PER_VOCAB_ENTRY, VOCAB_RANGE[0]), DEFAULT_VOCAB)
    sizes = sorted(TOKENS_AT_VOCAB)
    lo = max(v for v in sizes if v <= want)
    hi = min(v for v in sizes if v >= want)
    t = 0.0 if lo == hi else math.log2(want / lo) / math.log2(hi / lo)
    return default_tokens * (TOKENS_AT_VOCAB[lo] + t * (TOKENS_AT_VOCAB[hi] - TOKENS_AT_VOCAB[lo]))


def _budget_steps(shape: tuple[int, int, int, int], vocab: int, batch_size: int, seq_len: int,
                  budget_flops: float) -> int:
    flops = flops_per_token(shape_config(shape, vocab, seq_len), seq_len) * batch_size * seq_len
    return _nice(budget_flops / flops, down=True)


def size_for(train_tokens_estimate: int, *, batch_size: int = DEFAULT_BATCH, seq_len: int = DEFAULT_SEQ,
             budget_flops: float = LAPTOP_FLOPS) -> dict[str, int]:
    """Spec overrides (`section.key` -> value) for a corpus of about this many training tokens: the vocabulary,
    the model's shape from the ladder, the steps (~3.5 epochs, up to 8 on a small corpus, fewer when the compute
    budget binds),
    and the evaluation, checkpoint and warmup cadence. At the built-in corpus's size it gives the default spec
    (4 x 192, vocabulary 4,096, 700 steps). `budget_flops`: LAPTOP_FLOPS (a run of minutes on CPU) or GPU_FLOPS.
    On the laptop budget every value is non-decreasing in the corpus size; on a larger budget the model and the
    vocabulary are, and the steps are while the data rather than the budget ends the run."""
    tokens = max(1, int(train_tokens_estimate))
    vocab = sized_vocab(tokens)
    per_step = batch_size * seq_len
    # the corpus's rung, capped at the largest rung the budget can train on MIN_SEEN_PER_PARAM tokens per
    # parameter (judged at the largest vocabulary that rung could get, so the cap does not move with the corpus)
    top = max((s for s in LADDER if _budget_steps(s, _vocab_for(VOCAB_RANGE[1], s), batch_size, seq_len,
                                                  budget_flops) * per_step
               >= MIN_SEEN_PER_PARAM * shape_config(s, _vocab_for(VOCAB_RANGE[1], s)).n_params()),
              key=LADDER.index, default=LADDER[0])
    chosen = min(suggest_shape(tokens), top, key=LADDER.index)
    vocab = _vocab_for(vocab, chosen)
    steps = max(FLOOR_STEPS, min(sized_steps(int(tokens_at_vocab(tokens)), batch_size, seq_len),
                                 _budget_steps(chosen, vocab, batch_size, seq_len, budget_flops)))
    n_layers, d, heads, kv = chosen
    return {"tokenizer.vocab_size": vocab, "model.n_layers": n_layers, "model.d_model": d, "model.n_heads": heads,
            "model.n_kv_heads": kv, "train.max_steps": steps, **_cadence(steps)}


@dataclass
class DataFit:
    """What a run will make of its corpus: the figures `lmwright model plan` shows and the warnings the pretrain
    stage logs before training."""

    params: int
    train_tokens: int
    tokens_per_param: float  # training tokens (unique) per parameter
    chinchilla_tokens: int  # what a compute-optimal run would train this model on: ~20 per parameter
    run_tokens: int  # tokens the run sees: max_steps x batch_size x seq_len
    epochs: float  # run_tokens over the training split
    vocab_size: int
    tokens_per_vocab_entry: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def data_fit(cfg: ModelConfig, train_tokens: int, train: TrainSpec, continued: bool = False) -> DataFit:
    """The data figures of model `cfg` trained as `train` says over a training split of `train_tokens`, with a
    warning (and its fix) for too many epochs, too few tokens per parameter and a vocabulary too large for the
    corpus. `continued`: the model and vocabulary are an init model's (train.init_from): only the epochs are the
    run's to change, and a small corpus is what continued pretraining is for."""
    n, tokens = cfg.n_params(), max(0, int(train_tokens))
    per_step = train.batch_size * train.seq_len
    seen = train.max_steps * per_step
    epochs = seen / max(1, tokens)
    fit = DataFit(params=n, train_tokens=tokens, tokens_per_param=round(tokens / n, 4),
                  chinchilla_tokens=CHINCHILLA_TOKENS_PER_PARAM * n, run_tokens=seen, epochs=round(epochs, 2),
                  vocab_size=cfg.vocab_size, tokens_per_vocab_entry=round(tokens / cfg.vocab_size, 1))
    if tokens == 0:
        fit.warnings.append("the training split has no tokens: there is nothing to train on")
        return fit
    oversized = not continued and tokens / n < MIN_TOKENS_PER_PARAM
    limit = MAX_EPOCHS_OVERSIZED if oversized else MAX_EPOCHS
    if epochs > limit:
        fit.warnings.append(_epochs_warning(epochs, tokens, train, limit))
    if continued:
        return fit
    sized = size_for(tokens, batch_size=train.batch_size, seq_len=train.seq_len)
    if oversized:
        keys = ("model.n_layers", "model.d_model", "model.n_heads", "model.n_kv_heads")
        shape = tuple(sized[k] for k in keys)
        small = shape_config(shape, min(cfg.vocab_size, sized["tokenizer.vocab_size"]), train.seq_len)
        mine = (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads)
        advice = ("this is already the smallest size lmwright suggests: more data is the fix" if mine == shape
                  else "a model sized to it: " + " ".join(f"{k}={sized[k]}" for k in keys)
                  + f" ({small.n_params() / 1e6:.2f}M parameters), or more data")
        fit.warnings.append(
            f"{n / 1e6:.2f}M parameters for {tokens:,} training tokens: {tokens / n:.3f} tokens per parameter "
            f"(compute-optimal is ~{CHINCHILLA_TOKENS_PER_PARAM}; the built-in project runs at 0.17): the model is "
            f"too large for this corpus and will memorise it; {advice}")
    if tokens / cfg.vocab_size < MIN_TOKENS_PER_VOCAB_ENTRY:
        fit.warnings.append(f"tokenizer.vocab_size {cfg.vocab_size:,} for {tokens:,} training tokens "
                            f"({tokens / cfg.vocab_size:.1f} per entry): most entries are rare words merged whole, "
                            f"whose embeddings barely train; set tokenizer.vocab_size={sized['tokenizer.vocab_size']}")
    return fit


def _epochs_warning(epochs: float, tokens: int, train: TrainSpec, limit: float) -> str:
    steps = min(sized_steps(tokens, train.batch_size, train.seq_len),
                _nice(limit * tokens / (train.batch_size * train.seq_len), down=True))
    es = train.early_stopping
    evaluations = train.max_steps // train.eval_every
    cadence = max(1, train.max_steps // (es.patience + 5))  # room for `patience` evaluations without a gain, twice
    if not es.enabled:
        fix = (f"set train.max_steps={steps}, or train.early_stopping.enabled=true with train.eval_every={cadence} "
               "to keep the best validation weights")
    elif evaluations < es.patience + 2:
        fix = (f"early stopping is on but evaluates only {evaluations} times (patience {es.patience}), too few to "
               f"stop: set train.eval_every={cadence}, or train.max_steps={steps}")
    else:
        fix = f"early stopping is on and keeps the best validation weights; train.max_steps={steps} would save time"
    why = " for a model this large for its corpus" if limit == MAX_EPOCHS_OVERSIZED else ""
    return (f"{epochs:.1f} epochs over {tokens:,} training tokens ({train.max_steps:,} steps of {train.batch_size} x "
            f"{train.seq_len}): beyond {limit:g} epochs{why} a model memorises the data rather than learning more "
            f"from it (overfitting); {fix}")
