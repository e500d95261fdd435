"""Convert original PyTorch checkpoints to paddle_lrnn models, and back (`paddle-lrnn-convert`; from a checkout,
`python tools/convert.py`). No torch needed; nothing in a checkpoint is executed.

  paddle-lrnn-convert --model rwkv2 --src RWKV-v2.pth --out DIR [--vocab vocab.json]
  paddle-lrnn-convert --model rwkv2 --to torch --src DIR --out CKPT.pth
  paddle-lrnn-convert --model rwkv4 --src RWKV-4-Pile-169M-20220807-8023.pth --out DIR   # 20B_tokenizer.json beside
                                                           # it is carried along (or --vocab); --dtype float32 for CPU
  paddle-lrnn-convert --model rwkv4 --to torch --src DIR --out CKPT.pth   # a .pth RWKV-LM's RWKV_RNN loads
  paddle-lrnn-convert --model hgrn2 --src FLA_CHECKPOINT_DIR --out DIR    # config.json + model.safetensors,
                                                                         # pytorch_model.bin or a sharded index
  paddle-lrnn-convert --model hgrn2 --src FLA_CHECKPOINT_DIR --out DIR --dtype float32  # (default: as stored)
  paddle-lrnn-convert --model hgrn2 --src FLA_CHECKPOINT_DIR --out DIR --quantize int8  # int8 matrices, per-channel
                                                         # scales: half the bytes of bf16 for CPU decoding
  paddle-lrnn-convert --model hgrn2 --to torch --src DIR --out FLA_DIR   # a directory fla's from_pretrained loads
  paddle-lrnn-convert --model mru --src checkpoint-step-5000.pt --config model.json --out DIR
                                                 # an mru-lm training checkpoint and its run's model.json
  paddle-lrnn-convert --model mru --to torch --src DIR --out TRAIN_DIR   # model.json + checkpoints/*.pt
"""
import argparse

from paddle_lrnn.cli import ArgumentParser, run_cli


def main(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model family: rwkv2, rwkv4, hgrn2 or mru")
    p.add_argument("--src", required=True, help="the checkpoint to convert (a Paddle model directory with --to torch)")
    p.add_argument("--out", required=True, help="output model directory (with --to torch: a .pth file for rwkv2 "
                   "and rwkv4, an fla checkpoint directory for hgrn2, an mru-lm train folder for mru)")
    p.add_argument("--to", choices=["paddle", "torch"], default="paddle", help="direction (default: paddle)")
    p.add_argument("--vocab", help="the tokenizer to store with the converted model, a file or a folder (default: "
                   "the tokenizer files beside --src, if any)")
    p.add_argument("--config", help="mru: the run's model.json (default: the one beside --src or in its parent "
                   "folder, where mru-lm writes it)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="dtype of the converted weights "
                   "(default: the checkpoint's own, e.g. bfloat16 stays bfloat16)")
    p.add_argument("--quantize", choices=["int8"], help="store the matrices (every Linear weight, and a tied "
                   "embedding) as int8 with one float32 scale per output channel (weight-only; the rest keeps its "
                   "dtype)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (shown on stderr for checkpoints of 256 MiB "
                   "or more)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = p.parse_args(argv)

    from paddle_lrnn.convert import convert

    convert(args.model, args.src, args.out, to=args.to, vocab=args.vocab, config=args.config, dtype=args.dtype,
            quantize=args.quantize, overwrite=args.overwrite, quiet=True if args.quiet else None, log=print)


def cli():
    """The console script's entry point (setup.py)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
