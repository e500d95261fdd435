"""Export a model as Paddle inference programs (for paddle.jit.load and Paddle Inference), batch and length open
(`paddle-lrnn-export`; from a checkout, `python tools/export.py`).

  paddle-lrnn-export --model-dir out/austen --out exported/austen             # model, prefill and step programs
  paddle-lrnn-export --model-dir DIR --out EXPORTED --no-state --overwrite     # input_ids -> logits only

See paddle_lrnn/export.py and README ("Export for Paddle Inference") for the files and how to load them.
"""
import argparse
import os

from paddle_lrnn.cli import ArgumentParser, run_cli


def main(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="a directory written by train.py, convert.py or save_pretrained")
    p.add_argument("--out", required=True, help="the directory to write (model.json/.pdiparams, prefill.*, step.*, "
                   "export.json)")
    p.add_argument("--no-state", action="store_true", help="only the model program (input_ids -> logits), without "
                   "the prefill and step programs that generation needs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = p.parse_args(argv)
    if os.path.exists(args.out) and not args.overwrite:  # before loading Paddle and the model
        raise FileExistsError(f"--out {args.out} already exists; choose another path or pass --overwrite")

    from paddle_lrnn.export import export
    from paddle_lrnn.models import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(args.model_dir)
    manifest = export(model, args.out, with_state=not args.no_state, overwrite=args.overwrite)
    print(f"exported {args.model_dir} ({manifest['model_type']}) to {args.out}: "
          f"{', '.join(name + '.json' for name in manifest['programs'])}")


def cli():
    """The console script's entry point (setup.py)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
