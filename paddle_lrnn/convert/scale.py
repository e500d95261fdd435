"""Conversion, loading and decoding at real scale: a random checkpoint in the exact layout of fla-hub's HGRN2 releases
(bf16 safetensors shards + Hugging Face index, config.json with torch_dtype bfloat16, Llama-2-style tokenizer files
made with the `tokenizers` library), and the peak memory and time of converting, loading and decoding it (ms/token
against the memory floor: the bytes of weights a token reads over the read bandwidth measured in the same process),
each measured in a fresh
process (its VmHWM: ru_maxrss would do but for one thing, Linux carries it over from the parent across fork and
exec, so a child of a large process reports the parent's size), beside the floor of a process that only imports
Python + Paddle + paddle_lrnn.
Used by tools/bench.py --section scale (1.3B), its generation sections (read_bandwidth, token_weight_bytes) and
tests/test_convert_scale.py (a small layout)."""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from ..io import cast
from ..io.sharded import save_sharded

HGRN2_1_3B = dict(hidden_size=2048, num_hidden_layers=24, vocab_size=32000)  # fla-hub/hgrn2-1.3B's sizes


def hgrn2_config(hidden_size, num_hidden_layers, vocab_size, expand_ratio=128):
    """config.json of an fla HGRN2ForCausalLM of these sizes, with the fields fla-hub's checkpoints carry."""
    intermediate = -(-int(hidden_size * 4 * 2 / 3) // 256) * 256
    return {"architectures": ["HGRN2ForCausalLM"], "model_type": "hgrn2", "attn_mode": "chunk",
            "hidden_size": hidden_size, "num_hidden_layers": num_hidden_layers, "expand_ratio": expand_ratio,
            "num_heads": None, "use_short_conv": False, "conv_size": 4, "use_lower_bound": True, "hidden_ratio": 4,
            "intermediate_size": intermediate, "hidden_act": "swish", "max_position_embeddings": 2048,
            "elementwise_affine": True, "norm_eps": 1e-06, "attn": None, "use_cache": True, "pad_token_id": None,
            "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False, "initializer_range": 0.02,
            "fuse_norm": True, "fuse_swiglu": True, "fuse_cross_entropy": True, "vocab_size": vocab_size,
            "torch_dtype": "bfloat16", "transformers_version": "4.45.0"}


def hgrn2_tensors(config):
    """{name: (dtype, shape)} of fla's HGRN2ForCausalLM state dict (torch layout: Linear weights [out, in])."""
    d, n, v, i = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"], config["intermediate_size"]
    out = {"model.embeddings.weight": (v, d), "model.lower_bounds": (n, d)}
    for layer in range(n):
        p = f"model.layers.{layer}."
        out.update({p + "attn_norm.weight": (d,), p + "attn.q_proj.weight": (d, d), p + "attn.f_proj.weight": (d, d),
                    p + "attn.i_proj.weight": (d, d), p + "attn.g_norm.weight": (d,), p + "attn.o_proj.weight": (d, d),
                    p + "mlp_norm.weight": (d,), p + "mlp.gate_proj.weight": (i, d), p + "mlp.up_proj.weight": (i, d),
                    p + "mlp.down_proj.weight": (d, i)})
    out.update({"model.norm.weight": (d,), "lm_head.weight": (v, d)})
    return {k: ("bfloat16", s) for k, s in out.items()}


def write_llama_tokenizer(directory, vocab_size=32000):
    """tokenizer.json (SentencePiece-style BPE with byte fallback, as Llama-2's), tokenizer_config.json and
    special_tokens_map.json, made with the `tokenizers` library (trained on a little text: the files' layout is
    what matters here, not the merges)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=min(vocab_size, 1000), special_tokens=specials, show_progress=False)
    tok.train_from_iterator(["It is a truth universally acknowledged, that a single man in possession of a good "
                             "fortune, must be in want of a wife."] * 4, trainer)
    # Llama-2's ids: the three specials, the 256 byte tokens <0x00>..<0xFF>, then the pieces
    trained = json.loads(tok.to_str())["model"]
    pieces = [p for p, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]) if p not in specials]
    vocab = {p: i for i, p in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)] + pieces)}
    tok.model = models.BPE(vocab, [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]],
                           unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    tok.add_special_tokens(specials)
    tok.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
                   "unk_token": "<unk>", "pad_token": None, "clean_up_tokenization_spaces": False,
                   "legacy": False, "model_max_length": 1000000000000000019884624838656,
                   "tokenizer_class": "LlamaTokenizer"}, f, indent=2)
    with open(os.path.join(directory, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, f, indent=2)


def write_hgrn2_checkpoint(directory, hidden_size, num_hidden_layers, vocab_size, shards=2, seed=0,
                           tokenizer=True):
    """A random fla-layout HGRN2 checkpoint in `directory`: bf16 weights in `shards` safetensors files with
    model.safetensors.index.json, config.json, tokenizer files. Written tensor by tensor (one in memory at a
    time). Returns the weights' bytes."""
    os.makedirs(directory, exist_ok=True)
    config = hgrn2_config(hidden_size, num_hidden_layers, vocab_size)
    specs = hgrn2_tensors(config)
    total = sum(int(np.prod(s)) * 2 for _, s in specs.values())
    rng = np.random.default_rng(seed)

    def produce(shape):
        return cast((rng.standard_normal(shape, np.float32) * 0.02), "bfloat16")

    tensors = {k: (d, s, lambda s=s: produce(s)) for k, (d, s) in specs.items()}
    largest = max(int(np.prod(s)) * 2 for _, s in specs.values())
    save_sharded(directory, tensors, {"format": "pt"}, max_shard_size=total // shards + largest)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if tokenizer:
        write_llama_tokenizer(directory, vocab_size)
    return total


def read_bandwidth(nbytes=512 << 20):
    """The machine's read bandwidth in bytes/s, measured here: the fastest of three ways of reading `nbytes` of
    float32 once (numpy's sum, one thread; Paddle's sum; a vector times a [4096, ...] matrix with paddle.matmul, the
    memory-bound product decoding is made of, on all threads), each the median of 5 reads."""
    import paddle

    a = np.ones(nbytes // 4, np.float32)
    t = paddle.to_tensor(a)
    w, x = t.reshape([4096, -1]), paddle.ones([1, 4096])
    best = float("inf")
    for read in (lambda: a.sum(), lambda: float(t.sum()), lambda: paddle.matmul(x, w).numpy()):
        read()
        times = []
        for _ in range(5):
            start = time.perf_counter()
            read()
            times.append(time.perf_counter() - start)
        best = min(best, statistics.median(times))
    return a.nbytes / best


def token_weight_bytes(model):
    """Bytes of the weights one decoding step reads: every parameter (int8 scales included) but an embedding that is
    only looked up (one row per token); an embedding that is also the output head counts whole."""
    from ..layers.linear import Embedding, weight_only_layers

    def nbytes(p):
        return int(np.prod(p.shape)) * p.element_size()

    head = model.output_embedding()
    looked_up = sum(nbytes(layer.weight) for layer in weight_only_layers(model).values()
                    if isinstance(layer, Embedding) and layer is not head)
    return sum(nbytes(p) for p in model.parameters()) - looked_up


def timed_decoding(model, prompts, new_tokens):
    """(median ms per decoding step, ms of the prompt's forward pass and first token) of greedy generate_ids after
    `prompts` (a list of ids, or a list of such lists: a batch, one step for all rows)."""
    from ..generation import generate_ids

    marks = [time.perf_counter()]
    for _ in generate_ids(model, prompts, new_tokens + 1, temperature=0):
        marks.append(time.perf_counter())
    steps = [b - a for a, b in zip(marks[1:], marks[2:])]
    return statistics.median(steps) * 1e3, (marks[1] - marks[0]) * 1e3


def decoding_figures(model, prompt_tokens=32, new_tokens=16, batch=4):
    """Greedy decoding of a loaded model: one prompt of `prompt_tokens`, and `batch` prompts of different lengths
    (prompt_tokens, prompt_tokens - 3, ...) decoded together; then the read bandwidth and the weights a token reads.
    A dict of ms_per_token, prefill_ms, batch_ms_per_step, rss_decoding (VmHWM before the bandwidth is measured,
    whose buffers would add to it), bandwidth, token_bytes."""
    prompt = [3 + (7 * i) % 1000 for i in range(prompt_tokens)]
    ms, prefill = timed_decoding(model, prompt, new_tokens)
    prompts = [prompt[:max(1, prompt_tokens - 3 * r)] for r in range(batch)]
    batch_ms, _ = timed_decoding(model, prompts, new_tokens)
    return dict(ms_per_token=ms, prefill_ms=prefill, batch_ms_per_step=batch_ms, batch=batch,
                rss_decoding=peak_rss(), bandwidth=read_bandwidth(), token_bytes=token_weight_bytes(model))


def peak_rss():
    """This process's peak resident memory in bytes (VmHWM)."""
    return [int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0]


_PHASES = {
    "floor": "import paddle, paddle_lrnn.models, paddle_lrnn.convert",
    "convert": "from paddle_lrnn.convert import convert\nconvert('hgrn2', SRC, OUT, overwrite=True, quiet=QUIET, "
               "quantize=QUANTIZE, log=lambda *a: None)",
    "load": "import ctypes, numpy as np\nfrom paddle_lrnn.models import AutoModelForCausalLM\n"
            "m = AutoModelForCausalLM.from_pretrained(OUT, dtype=DTYPE, quantize=QUANTIZE, quiet=QUIET)\n"
            "for p in m.parameters():  # every page touched (summed in place, no copy)\n"
            "    n = int(np.prod(p.shape)) * p.element_size()\n"
            "    np.ctypeslib.as_array((ctypes.c_uint8 * n).from_address(p.data_ptr())).sum()",
    "decode": "from paddle_lrnn.models import AutoModelForCausalLM\nfrom paddle_lrnn.convert.scale import "
              "decoding_figures\nm = AutoModelForCausalLM.from_pretrained(OUT, dtype=DTYPE, quantize=QUANTIZE, "
              "quiet=QUIET)\nEXTRA = dict(load_seconds=time.perf_counter() - t0, **decoding_figures(m, **OPTIONS))",
}


def run_phase(phase, src=None, out=None, dtype=None, quiet=True, quantize=None, **options):
    """{seconds, rss, ...} of one phase ("floor", "convert", "load", "decode") run in a fresh Python process:
    seconds excludes the imports (the floor phase's own time is its import time), rss is its peak (VmHWM); the
    decode phase adds decoding_figures(model, **options) and load_seconds."""
    code = ("import json, sys, time\nSRC, OUT, DTYPE, QUANTIZE = [None if a == 'None' else a for a in sys.argv[1:5]]"
            "\nQUIET, OPTIONS, EXTRA = sys.argv[5] == 'True', json.loads(sys.argv[6]), {}\n"
            "import paddle, paddle_lrnn.models, paddle_lrnn.convert\nt0 = time.perf_counter()\n" + _PHASES[phase]
            + "\nseconds = time.perf_counter() - t0\nfrom paddle_lrnn.convert.scale import peak_rss\n"
            "print(json.dumps(dict(seconds=seconds, rss=peak_rss(), **EXTRA)))\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", code, str(src), str(out), str(dtype), str(quantize), str(quiet),
                          json.dumps(options)], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"the {phase} phase failed: {run.stderr[-2000:]}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    if phase == "floor":
        result["seconds"] = time.perf_counter() - start
    return result


def measure(phase, src=None, out=None, dtype=None, quiet=True, quantize=None):
    """(seconds, peak RSS bytes) of run_phase."""
    result = run_phase(phase, src, out, dtype, quiet, quantize)
    return result["seconds"], result["rss"]
