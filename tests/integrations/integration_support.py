"""Tiny models of every registered family and what the integration tests compare with: paddle_lrnn's own decoding
(generate_ids) and an exhaustive search over all continuations."""
import itertools

import numpy as np
import paddle
import paddle.nn.functional as F

from paddle_lrnn.models import FAMILIES, AutoModelForCausalLM
from paddle_lrnn.training.recipes import model_config, resolve

# every family, at the size of each family's CPU recipe shrunk to 2 layers of width 32 (a family added to FAMILIES
# and the recipes is tested without a change here); plus the optional state parts the recipes leave out
VARIANTS = [(t, {}) for t in sorted(FAMILIES)] + [
    ("mru", {"layers": ["mru", "mlp", "attn"]}),  # attention cache (batch axis 1) and a position shared by the batch
    ("hgrn2", {"use_short_conv": True}),          # short-convolution caches
]
VARIANT_IDS = [t + "".join(f"-{k}" for k in options) for t, options in VARIANTS]


def tiny_config(model_type, vocab_size, **options):
    cfg = resolve({"model": model_type, "device": "cpu", "n_layer": 2, "n_embd": 32, "ctx_len": 16,
                   "model_options": options})
    return model_config(cfg, vocab_size)


def tiny_model(model_type, vocab_size=29, seed=0, **options):
    """A paddle_lrnn model of the family whose parameters are moved off their initialisation by Gaussian noise of
    twice each parameter's RMS plus 0.05: freshly initialised, the families decode one token forever (MRU's
    state_matrices_up start at zero), which would let a comparison of decoders pass for the wrong reason; much more
    noise makes MRU's matrix products overflow into uniform probabilities (ties)."""
    paddle.seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(model_type, vocab_size, **options))
    rng = np.random.default_rng(seed)
    for _, param in model.named_parameters():
        value = param.numpy()
        sigma = 2 * np.sqrt(np.mean(np.square(value, dtype=np.float64))) + 0.05
        param.set_value((value + rng.normal(0, sigma, value.shape)).astype(value.dtype))
    model.eval()
    return model


def without_eos(model):
    """Generation in the library stops at config.eos_token_id (HGRN2's config sets 2); turn that off."""
    model.config.eos_token_id = None
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = None
    return model


@paddle.no_grad()
def continuation_log_probs(lrnn_model, prompt, length):
    """{continuation (tuple of ids): sum of its tokens' log-probabilities after `prompt`} for every continuation of
    `length` tokens, from the paddle_lrnn model in parallel mode (each sequence fed whole, no state carried)."""
    vocab = lrnn_model.config.vocab_size
    conts = list(itertools.product(range(vocab), repeat=length))
    ids = paddle.to_tensor([list(prompt) + list(c) for c in conts], dtype="int64")
    logp = F.log_softmax(lrnn_model(ids).logits.astype("float64"), axis=-1).numpy()
    P = len(prompt)
    targets = np.array(conts)
    picked = np.take_along_axis(logp[:, P - 1:P - 1 + length], targets[..., None], axis=-1)[..., 0]
    return dict(zip(conts, picked.sum(axis=1)))
