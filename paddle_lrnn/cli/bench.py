"""Benchmarks (never part of the tests): each section prints a markdown table measured in one run, so the ratios
inside a table are comparable even on a noisy machine. Paste the output into BENCHMARKS.md with the machine and
the date. From a checkout, `python tools/bench.py` is the same command.

  paddle-lrnn-bench                       # every section on CPU
  paddle-lrnn-bench --section ops         # custom operators against their pure-Paddle references
  paddle-lrnn-bench --section generation --original-rwkv2 DIR
        # RWKV-v2 L6 C512 decoding in float32, bfloat16 and int8 weights (--formats), fused and layer by layer,
        # against the memory floor and the original runner; DIR holds RWKV-LM's RWKV-v2-RNN/src (model_run.py),
        # imported from there (needs torch; nothing is copied)
  paddle-lrnn-bench --section rwkv4-generation --original-rwkv4 DIR
        # the same for an RWKV-4 169M-layout model; DIR holds RWKV-LM's RWKV-v4/src (model_run.py); about 3 GB
  paddle-lrnn-bench --section quantization  # validation loss of each family's CPU recipe (trained --train-steps
                                            # updates on the embedded corpus) in fp32, bf16, fp16 and int8
  paddle-lrnn-bench --section training --device gpu
  paddle-lrnn-bench --section scale   # convert, load and decode a random 1.3B HGRN2 checkpoint (bf16, fla-hub's
                                      # layout) in bf16 and int8: ~6.5 GiB on disk in --scale-dir (default: a
                                      # temporary directory, removed afterwards), ~4 GiB of memory per phase
  paddle-lrnn-bench --section isa            # the CPU operators at each instruction-set level
  paddle-lrnn-bench --section weight_matmul  # 16-bit / int8 weight products against the memory floor (~1.3 GB)
"""
import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time

from paddle_lrnn.cli import ArgumentParser, run_cli


def timed(fn, repeat, warmup=1):
    """Median wall time of fn() in milliseconds."""
    return timed_together([fn], [repeat], warmup)[0]


def timed_together(fns, repeats, warmup=1):
    """Median wall times (ms) of several callables, timed in alternation (round r runs every fn that still has
    repetitions left), so that a change of machine load during the run hits all of them alike and their ratio
    holds."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for r in range(max(repeats)):
        for fn, n, out in zip(fns, repeats, times):
            if r < n:
                start = time.perf_counter()
                fn()
                out.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def forward_and_backward(fn, inputs):
    """(forward only, forward + backward) callables for fn(*inputs) with a sum-of-outputs loss."""
    import paddle

    def fwd():
        with paddle.no_grad():
            fn(*inputs)

    def fwd_bwd():
        outs = fn(*inputs)
        outs = outs if isinstance(outs, (tuple, list)) else [outs]
        paddle.grad([o.astype("float32").sum() for o in outs], [t for t in inputs if not t.stop_gradient])

    return fwd, fwd_bwd


def op_cases():
    """(name, shape label, kernel fn, reference fn, make inputs)."""
    import paddle

    from paddle_lrnn import ops
    from paddle_lrnn.ops import reference

    def tensor(*shape, scale=1.0, low=None):
        t = paddle.rand(list(shape)) * 2 + 0.05 if low else paddle.randn(list(shape)) * scale
        t.stop_gradient = False
        return t

    cases = [
        ("wkv", "B=4 T=1024 C=512", ops.wkv, reference.wkv,
         lambda: [tensor(512, low=True), tensor(512), tensor(4, 1024, 512), tensor(4, 1024, 512)]),
        ("timex", "B=4 C=512 T=1024", ops.timex, reference.timex,
         lambda: [tensor(512, 1024, scale=0.05), tensor(4, 512, 1024)]),
    ]
    if hasattr(ops, "gla"):
        def gla_inputs():
            q, k, v = tensor(2, 1024, 4, 64), tensor(2, 1024, 4, 64), tensor(2, 1024, 4, 64)
            g = paddle.nn.functional.log_sigmoid(paddle.randn([2, 1024, 4, 64]) + 3)
            g.stop_gradient = False
            return [q, k, v, g]

        cases.append(("gla", "B=2 T=1024 H=4 K=V=64", ops.gla, reference.gla, gla_inputs))
    if hasattr(ops, "mru_scan"):
        def mru_inputs():
            m = paddle.eye(16).reshape([1, 1, 1, 16, 16]) + paddle.randn([8, 8, 1024, 16, 16]) * 0.02
            m.stop_gradient = False
            return [m]

        cases.append(("mru_scan", "B=8 H=8 T=1024 d=16", ops.mru_scan, reference.mru_scan, mru_inputs))
    return cases


def bench_ops(args):
    print("| operator | shape | pass | kernel ms | reference ms | speed-up |")
    print("|---|---|---|---:|---:|---:|")
    for name, shape, kernel, ref, make in op_cases():
        inputs = make()
        k_fwd, k_both = forward_and_backward(kernel, inputs)
        r_fwd, r_both = forward_and_backward(ref, inputs)
        for label, kf, rf in (("forward", k_fwd, r_fwd), ("forward+backward", k_both, r_both)):
            tk, tr = timed_together([kf, rf], [args.repeat, max(1, args.repeat // 3)])
            print(f"| {name} | {shape} | {label} | {tk:.2f} | {tr:.1f} | {tr / tk:.1f}x |", flush=True)
    bench_wkv_vs_timex(args)


def bench_wkv_vs_timex(args):
    """RWKV-v2's time-mix both ways: the O(T) recurrence against the original O(T^2) convolution (two passes)."""
    import paddle

    from paddle_lrnn import ops

    print("\n| RWKV-v2 time-mix, B=4 C=512 | pass | WKV ms | TimeX ms (2 passes) | WKV speed-up |")
    print("|---|---|---:|---:|---:|")
    for T in (1024, 4096):
        w, u = paddle.rand([512]) + 0.05, paddle.randn([512])
        k, v = paddle.randn([4, T, 512]), paddle.randn([4, T, 512])
        curve = paddle.rand([512, T])
        ek, ekv = paddle.randn([4, 512, T]), paddle.randn([4, 512, T])
        for t in (k, v, curve, ek, ekv):
            t.stop_gradient = False
        w_fwd, w_both = forward_and_backward(lambda k, v: ops.wkv(w, u, k, v, eps=1e-16), [k, v])
        t_fwd, t_both = forward_and_backward(
            lambda c, a, b: ops.timex(c, a) / ops.timex(c, b, eps=1e-16), [curve, ekv, ek])
        for label, wf, tf in (("forward", w_fwd, t_fwd), ("forward+backward", w_both, t_both)):
            tw, tt = timed_together([wf, tf], [args.repeat, max(1, args.repeat // 3)])
            print(f"| T={T} | {label} | {tw:.2f} | {tt:.1f} | {tt / tw:.1f}x |", flush=True)


def decoding(model, prompt, n, fused, **sampling):
    """A callable that generates n tokens after `prompt` with the fused CPU step operator (fused) or the layers one by
    one."""
    from paddle_lrnn.generation import generate_ids

    def generate():
        model.fused_step = fused
        for _ in generate_ids(model, prompt, n, **sampling):
            pass
    return generate


def original_decoding(family, src, model, prompt, n, *runner_args, scores=None):
    """A callable running RWKV-LM's RNN runner (RWKV_RNN of src/model_run.py, imported from the user's checkout
    `src` under its own module name) on `model`'s weights as run.py does: the prompt fed token by token, then the
    argmax appended and fed, n times. scores: turns the runner's logits list into numbers (default as they are)."""
    import importlib.util

    import numpy as np
    import torch

    from paddle_lrnn.convert import converter

    os.environ.setdefault("RWKV_RUN_DEVICE", "cpu")  # read by RWKV-4's model_run.py when imported
    spec = importlib.util.spec_from_file_location(f"original_{family}_model_run", os.path.join(src, "model_run.py"))
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, src)  # (its own imports)
    spec.loader.exec_module(module)
    with tempfile.TemporaryDirectory() as tmp:
        name = os.path.join(tmp, "bench")
        converter(family).to_torch(model, name + ".pth")
        rnn = module.RWKV_RNN(name, "cpu", "RWKV", *runner_args)
    torch.set_num_threads(os.cpu_count())
    ctx_len = model.config.ctx_len

    def original():
        rnn.clear()
        ctx = list(prompt)
        with torch.no_grad():
            for t in range(len(prompt)):
                logits = rnn.run(ctx[: t + 1])
            for _ in range(n):
                ctx.append(int(np.argmax(scores(logits) if scores else logits)))
                logits = rnn.run(ctx[-ctx_len:])
    return original


def weight_formats(model, formats):
    """{format: model} of a float32 `model` in each weight format ("float32": the model itself; "bfloat16",
    "float16": loaded as that dtype; "int8": quantized at load), through save_pretrained and from_pretrained as a user
    gets them."""
    from paddle_lrnn.models import AutoModelForCausalLM

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for fmt in formats:
            if fmt == "float32":
                out[fmt] = model
            elif fmt == "int8":
                out[fmt] = AutoModelForCausalLM.from_pretrained(tmp, dtype="float32", quantize="int8", quiet=True)
            else:
                out[fmt] = AutoModelForCausalLM.from_pretrained(tmp, dtype=fmt, quiet=True)
    for m in out.values():
        m.eval()
    return out


def generation_table(title, model, prompt, n, formats, extra_runs=(), original=None):
    """Prints one table: greedy decoding of `model` after `prompt` in each weight format (fused step and layer by
    layer), extra_runs [(label, fn, tokens, weight bytes)], and the original runner (fp32, fed the prompt token by
    token: its time is per every token it runs), timed in alternation; per token against the memory floor (the bytes
    of weights a token reads over the read bandwidth measured in this run) and against the original."""
    from paddle_lrnn.convert.scale import read_bandwidth, token_weight_bytes

    runs = []
    for fmt, m in weight_formats(model, formats).items():
        for fused in (True, False):
            label = f"paddle_lrnn ({'fused step' if fused else 'layer by layer'}, {fmt})"
            runs.append((label, decoding(m, prompt, n, fused, temperature=0), n, token_weight_bytes(m)))
    runs += list(extra_runs)
    if original is not None:
        runs.append((original[0], original[1], n + len(prompt), token_weight_bytes(model)))
    bandwidth = read_bandwidth()
    ms = timed_together([fn for _, fn, _, _ in runs], [3] * len(runs))
    base = ms[-1] / runs[-1][2] if original is not None else None
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; read bandwidth {bandwidth / 1e9:.1f} GB/s; "
          f"{n} tokens after a {len(prompt)}-token prompt, greedy\n")
    print(f"| generator, {title} | weights MB / token | ms / token | tokens/s | floor ms | vs floor | vs original |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (label, _, tokens, nbytes), t in zip(runs, ms):
        per_token, floor = t / tokens, nbytes / bandwidth * 1e3
        print(f"| {label} | {nbytes / 1e6:.0f} | {per_token:.2f} | {1e3 / per_token:.1f} | {floor:.2f} | "
              f"{per_token / floor:.2f}x | {f'{base / per_token:.2f}x' if base else '-'} |", flush=True)


def bench_generation(args):
    """Greedy decoding of an RWKV-v2 L6 C512 enwik8-size model (random weights) in float32, bfloat16 and int8 weights,
    fused step and layer by layer; with --original-rwkv2, the original RNN runner (fp32) on the same weights in the
    same run."""
    import paddle

    from paddle_lrnn.models.rwkv2 import RWKV2Config, RWKV2ForCausalLM

    paddle.seed(0)
    model = RWKV2ForCausalLM(RWKV2Config(vocab_size=6064, n_embd=512, n_layer=6, ctx_len=1024))
    for p in model.parameters():  # off the init, where many matrices are zero
        p.set_value(p + paddle.randn(p.shape) * 0.02)
    model.eval()
    prompt = list(range(1, 33))
    original = None
    if args.original_rwkv2:
        # (the copy head's entries of the runner's logits are 0-d tensors)
        original = ("RWKV-LM RWKV-v2-RNN runner (torch, fp32)",
                    original_decoding("rwkv2", args.original_rwkv2, model, prompt, args.tokens, 6, 512, 1024,
                                      scores=lambda logits: [float(v) for v in logits]))
    generation_table("L6 C512 V6064", model, prompt, args.tokens, args.formats, original=original)


def bench_rwkv4_generation(args):
    """Greedy decoding of an RWKV-4 169M-layout model (L12 C768 V50277, RWKV-4-Pile-169M's shapes, random weights)
    in float32, bfloat16 and int8 weights, fused step and layer by layer, against the memory floor, against the same
    matrix-vector products alone (float32, one paddle.matmul per weight matrix), and, with --original-rwkv4,
    RWKV-LM's RWKV_RNN runner (RWKV-v4/src/model_run.py, torch, fp32) on the same weights in the same run. Per
    token: ours over the --tokens it generates (the prompt is one parallel call), the runner's over every token it
    runs (it feeds the prompt token by token, as its run.py does)."""
    import paddle

    from paddle_lrnn.convert.scale import token_weight_bytes
    from paddle_lrnn.models.modeling_utils import skip_init
    from paddle_lrnn.models.rwkv4 import RWKV4Config, RWKV4ForCausalLM

    paddle.seed(0)
    config = RWKV4Config(vocab_size=50277, n_embd=768, n_layer=12, ctx_len=1024)
    with skip_init():  # random weights of the released layout (the orthogonal init of 50277 x 768 takes minutes)
        model = RWKV4ForCausalLM(config)
    for name, p in model.named_parameters():
        scale = 1.0 if ".time_" in name or ".ln" in name else 0.02
        p.set_value(paddle.randn(p.shape) * scale + (1.0 if name.endswith(("ln0.weight", "ln1.weight", "ln2.weight",
                                                                              "ln_out.weight")) else 0.0))
    model.eval()
    n = args.tokens
    prompt = list(range(1, 33))
    matrices = [p for name, p in model.named_parameters() if p.ndim == 2 and name != "emb.weight"]
    rows = {p.shape[0]: paddle.randn([1, p.shape[0]]) for p in matrices}

    def products():  # one token's matrix-vector products, nothing else
        for _ in range(n):
            for p in matrices:
                paddle.matmul(rows[p.shape[0]], p)

    extra = [("its matrix-vector products alone (fp32, paddle.matmul)", products, n, token_weight_bytes(model))]
    original = None
    if args.original_rwkv4:
        original = ("RWKV-LM RWKV-v4 RWKV_RNN runner (torch, fp32)",
                    original_decoding("rwkv4", args.original_rwkv4, model, prompt, n, config.n_layer, config.n_embd,
                                      config.ctx_len))
    generation_table("L12 C768 V50277 (169M)", model, prompt, n, args.formats, extra, original)


def bench_quantization(args):
    """The validation loss of each family's CPU recipe model, trained for --train-steps updates on the embedded
    corpus (the schedule compressed to that many), evaluated as saved (float32), as bfloat16, as float16 and
    quantized to int8 at load, through evaluate_model_dir on the validation split."""
    from paddle_lrnn.data import DEFAULT_CORPUS
    from paddle_lrnn.training.evaluation import evaluate_model_dir
    from paddle_lrnn.training.recipes import families, resolve
    from paddle_lrnn.training.trainer import Trainer

    loads = [("float32", dict()), ("bfloat16", dict(dtype="bfloat16")), ("float16", dict(dtype="float16")),
             ("int8", dict(quantize="int8"))]
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; each family's CPU recipe, "
          f"{args.train_steps} updates on the embedded corpus ({os.path.basename(DEFAULT_CORPUS)}); validation split, "
          f"{args.eval_batches} batches of 8 windows of the recipe's ctx_len\n")
    print("| family | weights | val loss (nats/token) | bits/char | perplexity | vs float32 (bits/char) |")
    print("|---|---|---:|---:|---:|---:|")
    for family in families():
        with tempfile.TemporaryDirectory() as out:
            recipe = resolve({"model": family})
            cfg = resolve({"model": family, "out": out, "max_steps": args.train_steps, "sample_length": 0,
                           "eval_interval": args.train_steps,
                           "warmup_steps": min(recipe.warmup_steps, args.train_steps // 10)})
            start = time.perf_counter()
            Trainer(cfg, log=lambda *_: None, progress=False).train()
            trained = time.perf_counter() - start
            base = None
            for label, kwargs in loads:
                r = evaluate_model_dir(out, DEFAULT_CORPUS, split="valid", max_batches=args.eval_batches,
                                       ctx_len=cfg.ctx_len, log=lambda *_: None, **kwargs)
                base = r["bpc"] if base is None else base
                print(f"| {family} ({cfg.n_layer} x {cfg.n_embd}, {trained:.0f} s of training) | {label} | "
                      f"{r['loss']:.5f} | {r['bpc']:.5f} | {r['ppl']:.4f} | {r['bpc'] - base:+.5f} |", flush=True)


def bench_training(args):
    """Training tokens/s of each family's recipe model for the device (the CPU recipe is what `paddle-lrnn-train`
    trains by default off GPU), on random tokens with Adam, fp32."""
    import paddle
    import paddle.nn.functional as F

    from paddle_lrnn.models import AutoModelForCausalLM
    from paddle_lrnn.training.recipes import families, model_config, resolve

    paddle.set_device(args.device)
    V = 256
    print(f"| family ({args.device} recipe, vocab {V}) | layers x width | B x T | parameters | tokens/s |")
    print("|---|---|---|---:|---:|")
    for family in families():
        paddle.seed(0)
        cfg = resolve({"model": family, "device": args.device})
        B, T = cfg.batch_size // cfg.grad_accum, cfg.ctx_len
        model = AutoModelForCausalLM.from_config(model_config(cfg, V))
        opt = paddle.optimizer.Adam(learning_rate=1e-4, parameters=model.parameters())
        x, y = paddle.randint(0, V, [B, T]), paddle.randint(0, V, [B, T])

        def step():
            loss = F.cross_entropy(model(x).logits.reshape([-1, V]), y.reshape([-1]))
            loss.backward()
            opt.step()
            opt.clear_grad()

        ms = timed(step, args.repeat)
        print(f"| {family} | {cfg.n_layer} x {cfg.n_embd} | {B} x {T} | {model.num_parameters():,} | "
              f"{B * T / (ms / 1e3):,.0f} |", flush=True)


def bench_scale(args):
    """A random checkpoint in fla-hub's HGRN2 layout converted (bf16 kept, and to int8), loaded and decoded, each phase
    in a fresh process: peak RSS and time against the weights' bytes and the floor of a process that only imports
    Paddle and paddle_lrnn; greedy decoding (one prompt, and a batch of prompts of different lengths decoded
    together) against the memory floor of the bytes a token reads at the read bandwidth measured in that process."""
    import shutil

    from paddle_lrnn.convert.scale import HGRN2_1_3B, run_phase, write_hgrn2_checkpoint

    sizes = HGRN2_1_3B if args.scale_size == "1.3B" else dict(hidden_size=512, num_hidden_layers=4, vocab_size=32000)
    root = tempfile.mkdtemp(prefix="paddle_lrnn-scale-", dir=args.scale_dir)
    gib = 1 << 30
    try:
        src, out, out8 = (os.path.join(root, d) for d in ("fla", "paddle", "paddle-int8"))
        start = time.perf_counter()
        weights = write_hgrn2_checkpoint(src, **sizes)
        made = time.perf_counter() - start
        floor = run_phase("floor")["rss"]
        print(f"HGRN2 {args.scale_size} layout ({sizes}), {weights / gib:.2f} GiB of bf16 weights in two shards "
              f"(largest {max(os.path.getsize(os.path.join(src, f)) for f in os.listdir(src)) / gib:.2f} GiB), "
              f"written in {made:.0f} s; floor (Python + Paddle + paddle_lrnn imported) {floor / gib:.2f} GiB; "
              f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
        print("| phase | seconds | GiB/s | peak RSS GiB | above floor GiB | above floor / weights |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, phase, kwargs, nbytes in (
                ("convert (bf16 kept)", "convert", dict(src=src, out=out), weights),
                ("convert --quantize int8", "convert", dict(src=src, out=out8, quantize="int8"), weights),
                ("from_pretrained (bf16, as stored)", "load", dict(out=out), weights),
                ("from_pretrained(dtype=float32)", "load", dict(out=out, dtype="float32"), 2 * weights),
                ("from_pretrained(quantize=int8)", "load", dict(out=out, quantize="int8"), weights),
                ("from_pretrained (int8, as converted)", "load", dict(out=out8), weights // 2)):
            r = run_phase(phase, **kwargs)
            print(f"| {label} | {r['seconds']:.1f} | {nbytes / gib / r['seconds']:.2f} | {r['rss'] / gib:.2f} | "
                  f"{(r['rss'] - floor) / gib:.2f} | {(r['rss'] - floor) / nbytes:.2f} |", flush=True)
        options = dict(prompt_tokens=32, new_tokens=args.scale_tokens, batch=4)
        print(f"\nGreedy decoding, each in a fresh process: {options['new_tokens']} tokens after a "
              f"{options['prompt_tokens']}-token prompt (median ms per token), and {options['batch']} prompts of "
              f"{options['prompt_tokens']}, {options['prompt_tokens'] - 3}, ... tokens decoded together (median ms "
              f"per step). Floor: the bytes a token reads (every weight but the looked-up embedding) over the read "
              f"bandwidth measured in the same process.\n")
        print("| weights | loaded in s | prefill ms | MB / token | read GB/s | floor ms | ms / token | vs floor | "
              f"batch {options['batch']}: ms / step | batch tokens/s | peak RSS GiB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label, kwargs in (("bf16 (as stored)", dict(out=out)),
                              ("int8 (quantized at load)", dict(out=out, quantize="int8")),
                              ("int8 (converted with --quantize int8)", dict(out=out8))):
            r = run_phase("decode", **kwargs, **options)
            floor_ms = r["token_bytes"] / r["bandwidth"] * 1e3
            print(f"| {label} | {r['load_seconds']:.1f} | {r['prefill_ms']:.0f} | {r['token_bytes'] / 1e6:.0f} | "
                  f"{r['bandwidth'] / 1e9:.1f} | {floor_ms:.1f} | {r['ms_per_token']:.1f} | "
                  f"{r['ms_per_token'] / floor_ms:.2f}x | {r['batch_ms_per_step']:.1f} | "
                  f"{r['batch'] * 1e3 / r['batch_ms_per_step']:.1f} | {r['rss_decoding'] / gib:.2f} |", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench_isa(args):
    """Each CPU operator at every instruction-set level this processor has (ops.cpu_isa(); the portable build's
    baseline, AVX2 and AVX-512 copies of the kernels), timed in alternation in one process."""
    from paddle_lrnn.ops import library

    levels = library.ISA_LEVELS[:library.ISA_LEVELS.index(library.cpu_isa_supported()) + 1]
    before = library.cpu_isa()

    def at(level, fn):
        def run():
            library.set_cpu_isa_cap(level)
            fn()
        return run

    print("| operator | shape | pass | " + " | ".join(f"{level} ms" for level in levels) + " | "
          + " | ".join(f"{level} speed-up" for level in levels[1:]) + " |")
    print("|---|---|---|" + "---:|" * (2 * len(levels) - 1))
    for name, shape, kernel, _, make in op_cases():
        fwd, both = forward_and_backward(kernel, make())
        for label, fn in (("forward", fwd), ("forward+backward", both)):
            ms = timed_together([at(level, fn) for level in levels], [args.repeat] * len(levels))
            print(f"| {name} | {shape} | {label} | " + " | ".join(f"{t:.1f}" for t in ms) + " | "
                  + " | ".join(f"{ms[0] / t:.2f}x" for t in ms[1:]) + " |", flush=True)
    library.set_cpu_isa_cap(before)


def copy_of_buffer(nbytes=256 << 20):
    """(copy, nbytes): a callable copying a buffer far larger than the caches with numpy. bytes copied / its time is
    the bandwidth of the memory floor (weight bytes / bandwidth), measured in alternation with what is benchmarked
    so that both see the same load."""
    import numpy as np

    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    return (lambda: np.copyto(dst, src)), nbytes


def decoding_matrices():
    """{model: ([(matrix, K, N, count) of one repeated unit], units per token, [(matrix, K, N) once per token])}:
    every matrix a decoding step multiplies, as nn.Linear stores it ([in, out])."""
    D, I, V, L = 2048, 5632, 32000, 24  # fla-hub HGRN2 1.3B (../shared/reference/hgrn2.md)
    C, H, VR, LR, DQ = 512, 4 * 512, 6064, 6, 256  # RWKV-v2 enwik8 L6 C512
    return {
        "HGRN2 1.3B (D2048 L24 V32000)": ([("q/f/i/o_proj", D, D, 4), ("gate/up_proj", D, I, 2),
                                           ("down_proj", I, D, 1)], L, [("lm_head", D, V)]),
        "RWKV-v2 L6 C512 V6064": ([("att key/value/receptance/output", C, C, 4), ("ffn key", C, H, 1),
                                   ("ffn receptance", C, C, 1), ("ffn value", H, C, 1)],
                                  LR, [("head", C, VR), ("head_q", C, DQ), ("head_k", C, DQ)]),
    }


def bench_weight_matmul(args):
    """ops.weight_matmul on every matrix of a decoding step, per weight dtype and row count, against the memory
    floor (weight bytes / copy bandwidth, measured here) and Paddle's float32 matmul on the same shapes. One
    repeated unit (a layer) is timed as decoding runs it, matrix after matrix, each matrix a distinct buffer, so
    that no weight is still cached when it is read again (the units of HGRN2 1.3B hold 100+ MB; RWKV-v2's whole
    bfloat16 model, 48 MB, is timed as one unit, but its int8 weights fit in a 32 MB L3)."""
    import numpy as np
    import paddle

    from paddle_lrnn import ops

    copy, copied = copy_of_buffer()
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; CPU kernels at {ops.cpu_isa()}; the floor "
          "is weight bytes / copy bandwidth (numpy copy of 256 MiB, timed in alternation with each row)\n")
    print("| model | weights | rows | MB / token | ms / token | GB/s | copy GB/s | floor ms | vs floor |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for model, (unit, units, once) in decoding_matrices().items():
        mats = [(K, N) for _, K, N, count in unit for _ in range(count)]
        for dtype in ("bfloat16", "float16", "int8", "float32"):
            def make(K, N):
                w = paddle.to_tensor(rng.standard_normal((K, N), dtype=np.float32) * 0.02)
                if dtype == "int8":
                    return ops.quantize_int8(w)
                return (w.astype(dtype) if dtype != "float32" else w), None

            unit_w, once_w = [make(K, N) for K, N in mats], [make(K, N) for _, K, N in once]
            nbytes = sum(w.numel().item() * w.element_size() + (0 if s is None else 4 * s.numel().item())
                         for w, s in unit_w) * units + sum(w.numel().item() * w.element_size() for w, _ in once_w)
            for rows in args.rows:
                xs = {K: paddle.randn([rows, K]) for K in {K for K, _ in mats + [(K, N) for _, K, N in once]}}

                def sweep(weights):
                    def run():
                        with paddle.no_grad():
                            for w, s in weights:
                                x = xs[w.shape[0]]
                                ops.weight_matmul(x, w, s) if dtype != "float32" else paddle.matmul(x, w)
                    return run

                t_unit, t_once, t_copy = timed_together([sweep(unit_w), sweep(once_w), copy], [args.repeat] * 3)
                ms = t_unit * units + t_once
                bandwidth = copied / t_copy * 1e3
                floor = nbytes / bandwidth * 1e3
                label = dtype if dtype != "float32" else "float32 (paddle.matmul)"
                print(f"| {model} | {label} | {rows} | {nbytes / 1e6:.0f} | {ms:.2f} | {nbytes / ms / 1e6:.1f} | "
                      f"{bandwidth / 1e9:.1f} | {floor:.2f} | {ms / floor:.2f}x |", flush=True)
            del unit_w, once_w


SECTIONS = {"ops": bench_ops, "generation": bench_generation, "rwkv4-generation": bench_rwkv4_generation,
            "training": bench_training, "quantization": bench_quantization, "scale": bench_scale, "isa": bench_isa,
            "weight_matmul": bench_weight_matmul}


def main(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--repeat", type=int, default=5, help="timed repetitions per measurement (median reported)")
    p.add_argument("--tokens", type=int, default=200, help="tokens generated per generation measurement")
    p.add_argument("--original-rwkv2", help="directory holding RWKV-LM's RWKV-v2-RNN/src (for the generation section)")
    p.add_argument("--original-rwkv4", help="directory holding RWKV-LM's RWKV-v4/src (for the rwkv4-generation "
                   "section)")
    p.add_argument("--rows", type=int, nargs="+", default=[1, 4, 16],
                   help="rows of activations (sequences decoded at once) for the weight_matmul section")
    p.add_argument("--scale-size", choices=["1.3B", "46M"], default="1.3B", help="the scale section's model size")
    p.add_argument("--scale-tokens", type=int, default=16, help="tokens the scale section decodes per measurement")
    p.add_argument("--formats", nargs="+", choices=["float32", "bfloat16", "float16", "int8"],
                   default=["float32", "bfloat16", "int8"], help="weight formats of the generation sections")
    p.add_argument("--train-steps", type=int, default=200,
                   help="updates each family trains for in the quantization section")
    p.add_argument("--eval-batches", type=int, default=20,
                   help="validation batches (of 8 windows) the quantization section evaluates")
    p.add_argument("--scale-dir", help="where the scale section writes its checkpoints (default: the system's "
                   "temporary directory)")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.tokens < 1:
        raise ValueError(f"--repeat and --tokens must be positive, got {args.repeat} and {args.tokens}")
    for flag in ("scale_tokens", "train_steps", "eval_batches"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if min(args.rows) < 1:
        raise ValueError(f"--rows must be positive, got {' '.join(map(str, args.rows))}")
    if args.original_rwkv2 and not os.path.isfile(os.path.join(args.original_rwkv2, "model_run.py")):
        raise FileNotFoundError(f"--original-rwkv2 {args.original_rwkv2} has no model_run.py; expected RWKV-LM's "
                                f"RWKV-v2-RNN/src directory")
    if args.original_rwkv4 and not os.path.isfile(os.path.join(args.original_rwkv4, "model_run.py")):
        raise FileNotFoundError(f"--original-rwkv4 {args.original_rwkv4} has no model_run.py; expected RWKV-LM's "
                                f"RWKV-v4/src directory")
    import paddle

    paddle.set_device(args.device)
    print(f"# paddle_lrnn benchmarks, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, paddle {paddle.__version__}, device {args.device}\n")
    for name, fn in SECTIONS.items():
        if args.section == name or (args.section == "all" and name != "scale"):  # (scale: minutes and GiBs)
            print(f"## {name}\n")
            fn(args)
            print()


def cli():
    """The console script's entry point (setup.py)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
