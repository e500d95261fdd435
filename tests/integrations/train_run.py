"""Trains the tiny model of every family with the library's Trainer, the settings README gives, in a process of its
own (as a user's resumed run would be):

    python tests/integrations/train_run.py LIBRARY full OUT     10 steps from scratch, a checkpoint every 5
    python tests/integrations/train_run.py LIBRARY resume OUT   the same run resumed from OUT/<family>/checkpoint-5

Both start from the paddle_lrnn model directory OUT/<family>/base (written by the full run), loaded through the
library's AutoModelForCausalLM. Each run writes OUT/<family>/final-<mode>.npz (the parameters after the last step) and, in full mode, the model
saved by trainer.save_model in OUT/<family>/final, the logged losses in OUT/<family>/losses.json and the
SHA-256 of the base weights as written in OUT/<family>/base.sha256.
"""
import hashlib
import importlib
import json
import os
import sys

import numpy as np
import paddle

from integration_support import VARIANTS, tiny_config
from paddle_lrnn.data import DEFAULT_CORPUS
from paddle_lrnn.models import AutoModelForCausalLM

# What README tells users of each library to pass: safetensors checkpoints that resume in a single process.
LIBRARY_ARGS = {
    "paddlenlp": dict(unified_checkpoint=True, report_to=[]),
    "paddleformers": dict(save_checkpoint_format="unified_checkpoint", load_checkpoint_format="unified_checkpoint",
                          amp_master_grad=False, report_to=["none"]),
}


class CharWindows(paddle.io.Dataset):
    """Windows of 33 characters of the embedded corpus as (input_ids, labels) shifted by one, as the libraries'
    causal LMs take them."""

    def __init__(self, n_windows=48, window=33):
        with open(DEFAULT_CORPUS, encoding="utf-8") as f:
            text = f.read(n_windows * window)
        chars = sorted(set(text))
        self.vocab_size = len(chars)
        ids = np.array([chars.index(c) for c in text], dtype="int64").reshape(n_windows, window)
        self.items = [{"input_ids": row[:-1], "labels": row[1:]} for row in ids]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def main(library, mode, out):
    importlib.import_module(f"paddle_lrnn.integrations.{library}")  # registers every family with the library
    trainer_module = importlib.import_module(f"{library}.trainer")
    data = CharWindows()
    auto_model = importlib.import_module(f"{library}.transformers").AutoModelForCausalLM
    for model_type in sorted({t for t, _ in VARIANTS}):
        run_dir = os.path.join(out, model_type)
        base = os.path.join(run_dir, "base")  # a paddle_lrnn model directory, fine-tuned as a user would
        if mode == "full":
            lrnn_config = tiny_config(model_type, data.vocab_size)
            if "dropout_rate" in lrnn_config.defaults:  # the resumed run must also restore the dropout RNG
                lrnn_config.dropout_rate = 0.1
            paddle.seed(1)
            AutoModelForCausalLM.from_config(lrnn_config).save_pretrained(base)
            with open(os.path.join(base, "model.safetensors"), "rb") as f:  # to check that training leaves it be
                digest = hashlib.sha256(f.read()).hexdigest()
            with open(os.path.join(run_dir, "base.sha256"), "w") as f:
                f.write(digest)
        model = auto_model.from_pretrained(base)
        args = trainer_module.TrainingArguments(
            output_dir=run_dir, max_steps=10, save_steps=5, per_device_train_batch_size=4, learning_rate=3e-3,
            logging_steps=1, seed=7, disable_tqdm=True, **LIBRARY_ARGS[library])
        losses = []  # (PaddleNLP 3.0.0b4 empties trainer.state.log_history at every log)
        recorder = type("LossRecorder", (trainer_module.TrainerCallback,), {
            "on_log": lambda self, args, state, control, logs=None, **kw: losses.append(logs["loss"])
            if logs and "loss" in logs else None})
        trainer = trainer_module.Trainer(model=model, args=args, train_dataset=data, callbacks=[recorder()])
        if mode == "full":
            trainer.train()
            trainer.save_model(os.path.join(run_dir, "final"))
            with open(os.path.join(run_dir, "losses.json"), "w") as f:
                json.dump(losses, f)
        else:
            trainer.train(resume_from_checkpoint=os.path.join(run_dir, "checkpoint-5"))
        np.savez(os.path.join(run_dir, f"final-{mode}.npz"), **{k: v.numpy() for k, v in model.state_dict().items()})


if __name__ == "__main__":
    main(*sys.argv[1:4])
