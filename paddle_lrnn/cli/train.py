"""Train a linear-RNN language model (`paddle-lrnn-train`; from a checkout, `python tools/train.py`).

  paddle-lrnn-train                                   # RWKV-v2 on the embedded Jane Austen corpus, CPU-sized
  paddle-lrnn-train --data enwik8 --preset enwik8 --device gpu --out out/enwik8
  paddle-lrnn-train --out out/enwik8 --resume         # continue exactly where it stopped
  paddle-lrnn-train --eval-only --model-dir out/enwik8 --data enwik8
  paddle-lrnn-train --eval-only --model-dir out/enwik8 --data enwik8 --dtype bfloat16   # (or --quantize int8):
                                                      # what 16-bit or int8 weights cost in bits/char
  paddle-lrnn-train --model hgrn2                     # HGRN2 on the embedded corpus, CPU-sized
  paddle-lrnn-train --model hgrn2 --preset wt103 --data wikitext-103-raw --vocab gpt2 --tokenizer GPT2_DIR \\
      --device gpu --out out/hgrn2-wt103              # the HGRN2 WikiText-103 recipe (see README)
  paddle-lrnn-train --eval-only --model-dir out/hgrn2-wt103 --data wikitext-103-raw --ctx-len 512
  paddle-lrnn-train --model mru                       # MRU-LM on the embedded corpus, CPU-sized
  paddle-lrnn-train --model mru --preset shakespeare-char --data input.txt --device gpu --out out/mru
                                                      # mru-lm's default run on tiny-shakespeare (see docs/mru.md)
  paddle-lrnn-train --eval-only --model-dir out/mru --data input.txt --layout shakespeare-char   # valid split
  paddle-lrnn-train --device gpu --amp bf16 ...       # mixed precision (bf16 or fp16 with loss scaling)
  python -m paddle.distributed.launch --gpus 0,1,2,3 tools/train.py --device gpu ...
                                                      # data parallel: --batch-size is the global batch
                                                      # (installed: $(which paddle-lrnn-train) for tools/train.py)

Unset hyper-parameters come from the family's recipe: the original's on --device gpu, scaled down on cpu.
"""
import argparse
import json
import os

from paddle_lrnn.cli import ArgumentParser, run_cli
from paddle_lrnn.training.amp import AMP_MODES  # (no paddle import)

RECIPE_FLAGS = {  # flag -> type; unset ones come from the recipe
    "max_steps": int, "batch_size": int, "ctx_len": int, "n_layer": int, "n_embd": int, "lr": float,
    "lr_final": float, "warmup_steps": int, "eval_interval": int, "eval_iters": int, "seed": int,
    "sample_length": int, "vocab": str, "tokenizer": str, "grad_accum": int,
}
HELP = {
    "batch_size": "sequences per update", "grad_accum": "micro-batches per update (memory only; default 1)",
    "vocab": "bytes, chars or words (built from the data), or the path of a tokenizer: a Hugging Face tokenizer.json "
    "or its folder, GPT-2's vocab.json + merges.txt folder, an RWKV World vocabulary, a saved vocabulary",
    "tokenizer": "the files of a tokenizer kind given as --vocab (gpt2: GPT-2's vocab.json and merges.txt folder)",
}


def parse(argv):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model family (default rwkv2)")
    p.add_argument("--preset", help="a named recipe, e.g. enwik8 for rwkv2")
    p.add_argument("--data", help="a text file (enwik8 is one) or a wikitext directory; default: the embedded corpus")
    p.add_argument("--layout", choices=["auto", "text", "wikitext", "shakespeare-char"], help="default: auto")
    p.add_argument("--out", default=os.path.join("out", "run"), help="output directory (default out/run)")
    p.add_argument("--device", choices=["cpu", "gpu"], help="default: gpu if Paddle has CUDA and a GPU, else cpu")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--skip-nonfinite", action="store_true", help="skip batches whose loss is NaN or inf")
    p.add_argument("--deterministic", action="store_true", help="on a GPU: fixed-order kernels where Paddle has "
                   "them, so that a run repeats bit for bit (CPU runs always do)")
    p.add_argument("--eval-only", action="store_true", help="evaluate --model-dir on the test split of --data")
    p.add_argument("--model-dir", help="with --eval-only: the model to evaluate")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="with --eval-only: cast the "
                   "model's weights to this dtype (default: as stored); 16-bit ones compute with float32 "
                   "activations on CPU")
    p.add_argument("--quantize", choices=["int8"], help="with --eval-only: quantize the model's matrices to int8 "
                   "(per-channel scales) after loading")
    p.add_argument("--split", choices=["test", "valid"], help="with --eval-only: the split to evaluate (default: "
                   "test, or valid for a layout without one, e.g. shakespeare-char)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--amp", choices=AMP_MODES, help="mixed precision on GPU (default off): bf16, or "
                   "fp16 with dynamic loss scaling; parameters and optimizer state stay float32")
    p.add_argument("--sharding", action=argparse.BooleanOptionalAction, default=None,
                   help="under paddle.distributed.launch: each process keeps the optimizer state of its share of the "
                        "parameters only (ZeRO stage 1)")
    for flag, typ in RECIPE_FLAGS.items():
        p.add_argument("--" + flag.replace("_", "-"), type=typ, help=HELP.get(flag))
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a field of the family's model config (VALUE read as JSON, else as a string), e.g. "
                        "expand_ratio=2 or use_short_conv=true for hgrn2; repeatable")
    return p.parse_args(argv)


def model_options(pairs):
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-option needs KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def default_device():
    import paddle

    return "gpu" if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"


def main(argv=None):
    args = parse(argv)
    for flag in ("dtype", "quantize"):
        if getattr(args, flag) is not None and not args.eval_only:
            raise ValueError(f"--{flag} applies to --eval-only (training keeps float32 weights)")
    if args.eval_only:
        if not args.model_dir or not args.data:
            raise ValueError("--eval-only needs --model-dir and --data")
        from paddle_lrnn.training.evaluation import evaluate_model_dir

        result = evaluate_model_dir(args.model_dir, args.data, split=args.split, layout=args.layout or "auto",
                                    max_batches=args.eval_iters, ctx_len=args.ctx_len, dtype=args.dtype,
                                    quantize=args.quantize)
        print(json.dumps(result))
        return
    from paddle_lrnn.training.recipes import resolve
    from paddle_lrnn.training.trainer import Trainer, resume_config

    given = {k: getattr(args, k) for k in [*RECIPE_FLAGS, "model", "preset", "data", "layout", "device", "amp",
                                           "sharding"]}
    explicit = {k: v for k, v in given.items() if v is not None}
    explicit["out"] = args.out
    if args.model_option:
        explicit["model_options"] = model_options(args.model_option)
    for flag in ("skip_nonfinite", "deterministic"):
        if getattr(args, flag):
            explicit[flag] = True
    if args.resume:  # the run's own settings, with what was given again checked against them
        cfg = resume_config(args.out, explicit, log=lambda *_: None)  # the trainer reports skipped checkpoints
    else:
        explicit.setdefault("device", default_device())
        cfg = resolve(explicit)
    Trainer(cfg, progress=not args.no_progress).train(resume=args.resume)


def cli():
    """The console script's entry point (setup.py)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
