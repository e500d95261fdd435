"""Generate text with a trained or converted model, printing tokens as they are made (`paddle-lrnn-generate`;
from a checkout, `python tools/generate.py`).

  paddle-lrnn-generate --model-dir out/run --prompt "It is a truth" --length 300
  paddle-lrnn-generate --model-dir DIR --prompt "\nIn the" --temperature 1.0 --top-p 0.7 --seed 1
  paddle-lrnn-generate --model-dir RWKV4_PILE_DIR --prompt "The" --top-p 0.85 --presence-penalty 0.2 \
      --frequency-penalty 0.2        # ChatRWKV's sampling for an RWKV-4 Pile model
  paddle-lrnn-generate --model-dir DIR --quantize int8     # int8 matrices: half the bytes per token of bf16

The model runs as stored: a bfloat16 or float16 model (as conversion keeps them) computes on CPU with float32
activations, its matrices streamed in 16 bits; --dtype casts it, --quantize int8 quantizes its matrices at load.

The text goes to stdout; at the end the prompt and decoding speeds (tokens/s) go to stderr unless --quiet.
Generation stops at the tokenizer's end-of-text token unless --ignore-eos.
"""
import argparse
import sys

from paddle_lrnn.cli import ArgumentParser, run_cli


def main(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="a directory written by train.py, convert.py or save_pretrained")
    p.add_argument("--prompt", default="\n", help="text to continue (backslash escapes such as \\n are decoded)")
    p.add_argument("--length", type=int, default=300, help="tokens to generate (default 300)")
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1.0)")
    p.add_argument("--top-p", type=float, default=0.85, help="nucleus sampling threshold (default 0.85)")
    p.add_argument("--top-a", type=float, default=0.0, help="drop tokens with p < top_a * p_max^2 (default 0: off)")
    p.add_argument("--top-k", type=int, default=0, help="keep at most the k most probable tokens (default 0: off)")
    p.add_argument("--presence-penalty", type=float, default=0.0, help="subtracted from the logit of every token "
                   "generated so far (ChatRWKV's alpha_presence; default 0)")
    p.add_argument("--frequency-penalty", type=float, default=0.0, help="subtracted once per earlier occurrence of "
                   "a generated token (ChatRWKV's alpha_frequency; default 0)")
    p.add_argument("--ban", type=int, action="append", default=[], metavar="ID",
                   help="a token id never to generate (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="cast the weights to this dtype "
                   "(default: as stored)")
    p.add_argument("--quantize", choices=["int8"], help="quantize the matrices to int8 (per-channel scales) at load")
    p.add_argument("--ignore-eos", action="store_true", help="go on past the end-of-text token")
    p.add_argument("--quiet", action="store_true", help="no speed report on stderr at the end")
    args = p.parse_args(argv)
    if args.length < 0:
        raise ValueError(f"--length must be >= 0, got {args.length}")
    if not 0 <= args.seed < 2 ** 64:
        raise ValueError(f"--seed must be an integer in [0, 2**64), got {args.seed}")
    prompt = args.prompt
    if "\\" in prompt:
        try:
            # characters beyond latin-1 travel as \\u escapes (unicode_escape reads bytes as latin-1)
            prompt = prompt.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError as err:
            raise ValueError(f"--prompt has a bad backslash escape ({err.reason}); write a backslash as \\\\") from None

    import paddle

    from paddle_lrnn.generation import generate_text, speed_report

    paddle.set_device(args.device)
    stats = {}
    for piece in generate_text(args.model_dir, prompt, args.length, temperature=args.temperature, top_p=args.top_p,
                               top_a=args.top_a, top_k=args.top_k, alpha_presence=args.presence_penalty,
                               alpha_frequency=args.frequency_penalty, token_ban=args.ban, seed=args.seed,
                               ignore_eos=args.ignore_eos, dtype=args.dtype, quantize=args.quantize,
                               stats=stats):
        print(piece, end="", flush=True)
    print()
    if not args.quiet:
        print(speed_report(stats), file=sys.stderr)


def cli():
    """The console script's entry point (setup.py)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
