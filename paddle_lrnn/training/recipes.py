"""Training recipes: every hyper-parameter of a run in one TrainConfig, resolved from the family's defaults (the
original recipe on GPU, a scaled-down one on CPU), then a preset, then what the user set explicitly."""
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Optional

from .amp import AMP_MODES


@dataclass
class TrainConfig:
    model: str = "rwkv2"
    preset: Optional[str] = None
    data: Optional[str] = None  # None: the embedded default corpus (Jane Austen's novels)
    vocab: str = "chars"
    tokenizer: Optional[str] = None  # the vocabulary's files for a tokenizer kind (GPT-2's vocab.json + merges.txt)
    layout: str = "auto"
    out: str = os.path.join("out", "run")
    device: str = "cpu"
    seed: int = 0
    max_steps: int = 0
    batch_size: int = 0  # sequences per update
    grad_accum: int = 1  # micro-batches per update (batch_size / grad_accum sequences each)
    ctx_len: int = 0
    n_layer: int = 0
    n_embd: int = 0
    lr: float = 0.0
    lr_final: float = 0.0
    warmup_steps: int = 0
    lr_start: Optional[float] = None  # the warm-up's first rate (None: the schedule's default, see schedule.lr_at)
    decay_steps: int = 0  # cosine: steps of the decay after the warm-up (0: until max_steps)
    schedule_interval: int = 1  # the rate changes every this many updates (mru-lm: 10)
    schedule: str = "cosine"
    optimizer: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_interval: int = 0
    eval_iters: int = 0
    skip_nonfinite: bool = False
    deterministic: bool = False  # fixed-order GPU kernels where Paddle has them (see trainer.set_deterministic)
    sample_length: int = 300
    amp: str = "off"  # mixed precision: off, bf16 or fp16 (see amp.py)
    sharding: bool = False  # shard the optimizer state over the data-parallel ranks (see distributed.py)
    model_options: dict = field(default_factory=dict)  # family-specific config fields

    def to_dict(self):
        return dataclasses.asdict(self)


# mru-lm's default run (config/shakespeare-char/{model,train,hprms}.json at c45d36d): 5000 steps of 64 x 256
# characters, AdamW betas (0.9, 0.99), weight decay 0.1, the rate 1e-4 -> 1e-3 over 100 warm-up steps, then a cosine
# to 1e-4 over 5000 steps counted from the end of the warm-up (so it ends at step 5100, after training), changed every
# 10 steps (schedule_interval); the model E 384, 6 x [mru, mlp], 6 state heads of 8 x 8, dropout 0.2. The three
# parameter groups (no decay for wte and the LayerNorms; state_matrices_up at (1/o) sqrt(2/T) x the rate, clipped at
# sqrt(T/2); the rest clipped at 1.0) come from MRUForCausalLM.parameter_groups. The original evaluates the whole
# validation split every 200 steps (eval_iters 1000 covers it: tiny-shakespeare's is 7 batches). Its reported
# result (README plot, an earlier MRU variant, read off the plot): val loss about 1.50 at steps 1400-1800, ending
# about 1.68; train about 0.91.
MRU_SHAKESPEARE = dict(
    n_layer=6, n_embd=384, ctx_len=256, batch_size=64, grad_accum=1, max_steps=5000, lr=1e-3, lr_start=1e-4,
    lr_final=1e-4, warmup_steps=100, decay_steps=5000, schedule_interval=10, schedule="cosine", optimizer="adamw",
    beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1, grad_clip=1.0, eval_interval=200, eval_iters=1000,
    sample_length=192, vocab="chars",
    model_options=dict(n_state_heads=6, state_size=384, n_attn_heads=6, key_size=384, value_size=384,
                       max_sequence_length=1024, dropout_rate=0.2))

# RWKV-4's enwik8 run (RWKV-LM RWKV-v4/train.py and src/trainer.py at 524481d): L6 C512 ("RWKV"), 1024 characters,
# batch 12, Adam betas (0.9, 0.99) eps 1e-8 without weight decay, 8e-4 decayed exponentially to 1e-5 over 500
# mini-epochs of 9,996 samples (833 updates each: 416,500 updates) without warm-up, bfloat16 mixed precision, no
# gradient clipping (its single-GPU run clips nothing; only its DeepSpeed configuration clips at 1.0), and the L2Wrap
# term in the loss (RWKV4ForCausalLM.loss_penalty). It has no evaluation; every 1000 updates is our choice.
RWKV4_ENWIK8 = dict(n_layer=6, n_embd=512, ctx_len=1024, batch_size=12, grad_accum=1, lr=8e-4, lr_final=1e-5,
                    warmup_steps=0, schedule="exponential", optimizer="adam", beta1=0.9, beta2=0.99, eps=1e-8,
                    weight_decay=0.0, grad_clip=0.0, max_steps=416_500, eval_interval=1000, eval_iters=100,
                    vocab="chars", amp="bf16")

# Per family: "gpu" holds the original recipe (as far as the reference establishes it), "cpu" overrides it to
# train in minutes on two cores, "presets" name complete recipes for known corpora.
RECIPES = {
    "rwkv2": {
        "gpu": dict(n_layer=6, n_embd=512, ctx_len=1024, batch_size=12, lr=6e-4, lr_final=1e-5, warmup_steps=0,
                    schedule="cosine", optimizer="adam", beta1=0.9, beta2=0.99, eps=4e-9, weight_decay=0.0,
                    grad_clip=1.0, max_steps=417_000, eval_interval=1000, eval_iters=100, vocab="chars"),
        "cpu": dict(n_layer=4, n_embd=128, ctx_len=128, batch_size=16, max_steps=400, lr=2e-3, lr_final=1e-4,
                    eval_interval=100, eval_iters=10),
        # RWKV-v2's enwik8 run: 500 "mini-epochs" of 10,000 samples of 1024 characters at batch 12.
        "presets": {"enwik8": dict(n_layer=6, n_embd=512, ctx_len=1024, batch_size=12, lr=6e-4, lr_final=1e-5,
                                   max_steps=417_000, vocab="chars")},
    },
    "rwkv4": {
        "gpu": RWKV4_ENWIK8,
        # a few minutes on two cores, characters of the embedded corpus, float32; clipped at 1.0 for the higher rate
        # (8e-3 reached 1.47 nats/char after 400 updates, 4e-3 1.48, 2e-3 1.54)
        "cpu": dict(n_layer=4, n_embd=128, ctx_len=128, batch_size=16, max_steps=400, lr=8e-3, lr_final=1e-4,
                    grad_clip=1.0, eval_interval=100, eval_iters=10, amp="off"),
        "presets": {"enwik8": RWKV4_ENWIK8},
    },
    # HGRN2's WikiText-103 recipe (OpenNLPLab/HGRN2 script_lm.sh, fairseq): Adam(W) betas (0.9, 0.98), decoupled
    # weight decay 0.1 on every parameter (fairseq's Adam), clip 1.0, lr 5e-4, inverse-sqrt with 4000 warm-up
    # updates from 1e-7, 512 tokens per sample, 128 sequences (65,536 tokens) per update as 8 micro-batches of 16
    # (fairseq's batch 16 per GPU and update-freq), 50,000 updates, tied embeddings, GPT-2 BPE. The model size of
    # the paper's hgrn2_lm_* architectures is not in the reference: D=512, 6 layers, expand_ratio 128 (4 heads) in
    # fla's layout is OUR choice, as is evaluating every 1000 updates. Not reproduced: fairseq's dropout 0.1 (fla's
    # model has none) and bf16.
    "hgrn2": {
        "gpu": dict(n_layer=6, n_embd=512, ctx_len=512, batch_size=128, grad_accum=8, lr=5e-4, lr_final=0.0,
                    warmup_steps=4000, schedule="inverse_sqrt", optimizer="adamw", beta1=0.9, beta2=0.98, eps=1e-8,
                    weight_decay=0.1, grad_clip=1.0, max_steps=50_000, eval_interval=1000, eval_iters=100,
                    vocab="gpt2", model_options=dict(expand_ratio=128, tie_word_embeddings=True)),
        # a few minutes on two cores, characters of the embedded corpus
        "cpu": dict(n_layer=2, n_embd=128, ctx_len=128, batch_size=16, grad_accum=1, max_steps=500, lr=2e-3,
                    lr_final=1e-4, warmup_steps=50, schedule="cosine", eval_interval=100, eval_iters=10,
                    vocab="chars", model_options=dict(expand_ratio=32, tie_word_embeddings=True)),
        "presets": {"wt103": dict(n_layer=6, n_embd=512, ctx_len=512, batch_size=128, grad_accum=8, lr=5e-4,
                                  lr_final=0.0, warmup_steps=4000, schedule="inverse_sqrt", optimizer="adamw",
                                  beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.1, grad_clip=1.0,
                                  max_steps=50_000, eval_interval=1000, eval_iters=100, vocab="gpt2",
                                  model_options=dict(expand_ratio=128, tie_word_embeddings=True))},
    },
    "mru": {
        "gpu": MRU_SHAKESPEARE,
        # a few minutes on two cores, characters of the embedded corpus: E 128, 2 x [mru, mlp], 2 heads of 8 x 8, no
        # dropout, T 128, a plain cosine; the parameter groups as the original's (state_matrices_up learns at
        # 1/64 of the rate, so the MRU needs more updates than the other families' CPU presets).
        # max_sequence_length 128 = T: no attention layer uses it; --eval-only takes it as its default window (the
        # prefix products are unnormalised and grow past the training length). Samples stay within T (64 + 64).
        "cpu": dict(n_layer=2, n_embd=128, ctx_len=128, batch_size=16, grad_accum=1, max_steps=1200, lr=4e-3,
                    lr_start=None, lr_final=1e-4, warmup_steps=100, decay_steps=0, schedule_interval=1,
                    schedule="cosine", eval_interval=200, eval_iters=10, sample_length=64, vocab="chars",
                    model_options=dict(n_state_heads=2, state_size=128, n_attn_heads=2, key_size=128, value_size=128,
                                       max_sequence_length=128, dropout_rate=0.0)),
        "presets": {"shakespeare-char": dict(MRU_SHAKESPEARE, layout="shakespeare-char")},
    },
}


def model_config(cfg, vocab_size):
    """The family's model config for a run: the shared sizes plus cfg.model_options."""
    try:
        return _model_config(cfg, vocab_size)
    except TypeError as err:  # an unknown field: for a training run, a bad --model-option
        raise ValueError(f"--model-option: {err}") from None


def _model_config(cfg, vocab_size):
    if cfg.model == "rwkv2":
        from ..models.rwkv2 import RWKV2Config

        return RWKV2Config(vocab_size=vocab_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer, ctx_len=cfg.ctx_len,
                           **cfg.model_options)
    if cfg.model == "rwkv4":
        from ..models.rwkv4 import RWKV4Config

        return RWKV4Config(vocab_size=vocab_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer, ctx_len=cfg.ctx_len,
                           **cfg.model_options)
    if cfg.model == "hgrn2":
        from ..models.hgrn2 import HGRN2Config

        return HGRN2Config(vocab_size=vocab_size, hidden_size=cfg.n_embd, num_hidden_layers=cfg.n_layer,
                           **cfg.model_options)
    if cfg.model == "mru":
        from ..models.mru import MRUConfig

        options = dict(cfg.model_options)
        if "layers" not in options:  # n_layer blocks of [mru, mlp], as mru-lm's configs are written
            options["layers"] = ["mru", "mlp"] * cfg.n_layer
        return MRUConfig(vocab_size=vocab_size, embedding_size=cfg.n_embd, **options)
    raise ValueError(f"unknown model family {cfg.model!r}")


def families():
    return sorted(RECIPES)


def resolve(explicit):
    """A TrainConfig from the user's explicit settings (a dict without the unset ones) over the family's defaults
    for the device and the preset. Raises ValueError for an unknown family, preset or setting."""
    family = explicit.get("model", TrainConfig.model)
    if family not in RECIPES:
        raise ValueError(f"unknown --model {family!r}; expected one of {', '.join(families())}")
    recipe = RECIPES[family]
    device = explicit.get("device", TrainConfig.device)
    values = dict(recipe["gpu"])
    if device == "cpu":
        values.update(recipe["cpu"])
    preset = explicit.get("preset")
    if preset is not None:
        if preset not in recipe["presets"]:
            known = ", ".join(sorted(recipe["presets"])) or "none"
            raise ValueError(f"unknown --preset {preset!r} for {family}; known: {known}")
        values.update(recipe["presets"][preset])
    options = {**values.get("model_options", {}), **explicit.get("model_options", {})}  # merged, not replaced
    values.update(explicit)
    values["model_options"] = options
    known_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known_fields)
    if unknown:
        raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
    cfg = TrainConfig(**values)
    validate(cfg)
    return cfg


def validate(cfg):
    positive = ("max_steps", "batch_size", "grad_accum", "ctx_len", "n_layer", "n_embd", "eval_interval",
                "eval_iters")
    for name in positive:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if value >= 2 ** 31:  # Paddle takes tensor dimensions as int32
            raise ValueError(f"--{name.replace('_', '-')} {value} is too large (at most 2**31 - 1)")
    if not isinstance(cfg.schedule_interval, int) or isinstance(cfg.schedule_interval, bool) \
            or cfg.schedule_interval < 1:
        raise ValueError(f"schedule_interval must be a positive integer, got {cfg.schedule_interval!r}")
    if not isinstance(cfg.decay_steps, int) or isinstance(cfg.decay_steps, bool) or cfg.decay_steps < 0:
        raise ValueError(f"decay_steps must be a non-negative integer, got {cfg.decay_steps!r}")
    if cfg.lr_start is not None and not 0 <= cfg.lr_start < math.inf:
        raise ValueError(f"lr_start must be a finite number >= 0, got {cfg.lr_start!r}")
    for name in ("lr", "eps"):
        if not 0 < getattr(cfg, name) < math.inf:
            raise ValueError(f"--{name.replace('_', '-')} must be a finite positive number, got {getattr(cfg, name)!r}")
    for name in ("lr_final", "weight_decay", "grad_clip"):
        if not 0 <= getattr(cfg, name) < math.inf:
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {getattr(cfg, name)!r}")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or not 0 <= cfg.seed < 2 ** 64:
        raise ValueError(f"--seed must be an integer in [0, 2**64), got {cfg.seed!r}")
    if cfg.warmup_steps < 0 or cfg.warmup_steps > cfg.max_steps:
        raise ValueError(f"--warmup-steps must be in [0, max_steps={cfg.max_steps}], got {cfg.warmup_steps}")
    if cfg.schedule == "exponential" and not cfg.lr_final > 0:
        raise ValueError(f"--lr-final must be > 0 with the exponential schedule (it decays lr to lr_final), got "
                         f"{cfg.lr_final!r}")
    if cfg.device not in ("cpu", "gpu"):
        raise ValueError(f"--device must be cpu or gpu, got {cfg.device!r}")
    if cfg.amp not in AMP_MODES:
        raise ValueError(f"--amp must be one of {', '.join(AMP_MODES)}, got {cfg.amp!r}")
    if cfg.amp != "off" and cfg.device == "cpu":
        raise ValueError(f"--amp {cfg.amp} needs --device gpu: Paddle runs no mixed precision on CPU (auto_cast does "
                         f"nothing there and its CPU matmul has no half-precision kernel); train on CPU with --amp off")
    if cfg.optimizer not in ("adam", "adamw"):
        raise ValueError(f"optimizer must be adam or adamw, got {cfg.optimizer!r}")
    if cfg.batch_size % cfg.grad_accum:
        raise ValueError(f"--batch-size {cfg.batch_size} (sequences per update) is not divisible by --grad-accum "
                         f"{cfg.grad_accum} (micro-batches per update)")
    if str(cfg.vocab).lower() in ("gpt2", "bpe") and not cfg.tokenizer:
        raise ValueError("--vocab gpt2 needs the GPT-2 tokenizer files: pass --tokenizer DIR (a directory with "
                         "vocab.json and merges.txt), or choose --vocab words")
    if str(cfg.vocab).lower() in ("hf", "world", "cut-down") and not cfg.tokenizer:
        raise ValueError(f"--vocab {cfg.vocab} needs the tokenizer's files: pass --tokenizer PATH, or give the path "
                         f"as --vocab itself")
    if not isinstance(cfg.model_options, dict):
        raise ValueError(f"model_options must be a dict, got {cfg.model_options!r}")
    if cfg.sample_length < 0:
        raise ValueError(f"sample_length must be >= 0, got {cfg.sample_length}")
