"""Trainer additions used by the HGRN2 recipe, tested on the smallest RWKV-v2 model (they are family-independent):
gradient accumulation trains exactly what the whole batch trains, --tokenizer passes GPT-2's files by path, metrics
and --eval-only name their perplexity unit and report <split>_ppl, and recurrent models without a context limit are
evaluated on windows of any --ctx-len."""
import math

import numpy as np
import pytest

from paddle_lrnn.data import Gpt2Vocab, load_vocab
from paddle_lrnn.models import AutoModelForCausalLM
from paddle_lrnn.training import metrics
from paddle_lrnn.training.evaluation import evaluate_model_dir
from paddle_lrnn.training.recipes import resolve
from paddle_lrnn.training.trainer import Trainer
from tokenizer_files import hand_gpt2_files
from training_helpers import austen_excerpt


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return austen_excerpt(tmp_path_factory, 60_000)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """GPT-2-format tokenizer files: the 256 byte symbols plus a few merges and <|endoftext|>."""
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "n"), ("an", "d"), ("Ġ", "and"), ("i", "n"), ("e", "r")]
    return hand_gpt2_files(str(tmp_path_factory.mktemp("gpt2")), merges)


def tiny(corpus_file, out, **overrides):
    settings = dict(model="rwkv2", data=corpus_file, out=str(out), device="cpu", n_layer=1, n_embd=16, ctx_len=16,
                    batch_size=8, max_steps=3, eval_interval=3, eval_iters=1, lr=3e-3, lr_final=1e-4,
                    sample_length=0, seed=3)
    settings.update(overrides)
    return resolve(settings)


def train(cfg):
    t = Trainer(cfg, log=lambda *_: None, progress=False)
    return t.train(), t


@pytest.mark.slow
def test_gradient_accumulation_trains_what_the_whole_batch_trains(corpus_file, tmp_path):
    whole_state, whole = train(tiny(corpus_file, tmp_path / "whole"))
    for k in (2, 4):
        state, part = train(tiny(corpus_file, tmp_path / f"accum{k}", grad_accum=k))
        assert state["tokens"] == whole_state["tokens"] == 3 * 8 * 16
        assert state["loss_sum"] == 0 and whole_state["loss_sum"] == 0  # reset at the evaluation
        for (name, p), (_, q) in zip(whole.model.named_parameters(), part.model.named_parameters()):
            np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=2e-5, atol=2e-6, err_msg=f"{name}, k={k}")
        a, b = (metrics.read_records(str(d / "metrics.jsonl"))[-1] for d in (tmp_path / "whole", tmp_path / f"accum{k}"))
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)


def test_grad_accum_must_divide_the_batch(corpus_file, tmp_path):
    with pytest.raises(ValueError, match="--batch-size 8 .* not divisible by --grad-accum 3"):
        tiny(corpus_file, tmp_path, grad_accum=3)
    with pytest.raises(ValueError, match="--grad-accum must be a positive integer"):
        tiny(corpus_file, tmp_path, grad_accum=0)


def test_gpt2_tokenizer_by_path_and_perplexity_units(corpus_file, gpt2_dir, tmp_path):
    with pytest.raises(ValueError, match="--vocab gpt2 needs the GPT-2 tokenizer files: pass --tokenizer DIR"):
        tiny(corpus_file, tmp_path, vocab="gpt2")
    _, t = train(tiny(corpus_file, tmp_path / "bpe", vocab="gpt2", tokenizer=gpt2_dir))
    assert isinstance(t.corpus.vocab, Gpt2Vocab) and t.corpus.vocab_size == 265
    record = metrics.read_records(str(tmp_path / "bpe" / "metrics.jsonl"))[-1]
    assert record["tokenization"] == "gpt2" and record["ppl_unit"] == "bpe token"
    assert record["val_ppl"] == pytest.approx(math.exp(record["val_loss"]))
    assert load_vocab(str(tmp_path / "bpe")).fingerprint() == Gpt2Vocab.from_dir(gpt2_dir).fingerprint()
    result = evaluate_model_dir(str(tmp_path / "bpe"), corpus_file, max_batches=2, log=lambda *_: None)
    assert result["split"] == "test" and result["ppl_unit"] == "bpe token" and result["tokenization"] == "gpt2"
    assert result["test_ppl"] == result["ppl"] == pytest.approx(math.exp(result["test_loss"]))
    with pytest.raises(ValueError, match="holds a gpt2 vocabulary, but --vocab is words"):
        train(tiny(corpus_file, tmp_path / "mismatch", vocab="words", tokenizer=gpt2_dir))


def test_eval_window_limit_only_for_models_with_a_context_limit(corpus_file, tmp_path):
    train(tiny(corpus_file, tmp_path / "rwkv2"))
    with pytest.raises(ValueError, match="--ctx-len 32 exceeds the model's context length 16"):
        evaluate_model_dir(str(tmp_path / "rwkv2"), corpus_file, ctx_len=32, log=lambda *_: None)
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "rwkv2"))
    assert model.config.ctx_len == 16


@pytest.mark.slow
def test_resume_may_change_grad_accum(corpus_file, tmp_path):
    from paddle_lrnn.training.trainer import resume_config

    # a constant learning rate: the schedule then does not depend on max_steps, which the resume changes
    _, straight = train(tiny(corpus_file, tmp_path / "straight", max_steps=4, eval_interval=2, schedule="constant"))
    train(tiny(corpus_file, tmp_path / "split", max_steps=2, eval_interval=2, schedule="constant"))
    cfg = resume_config(str(tmp_path / "split"), dict(max_steps=4, grad_accum=4, out=str(tmp_path / "split")),
                        log=lambda *_: None)
    t = Trainer(cfg, log=lambda *_: None, progress=False)
    assert t.train(resume=True)["step"] == 4
    for (name, p), (_, q) in zip(straight.model.named_parameters(), t.model.named_parameters()):
        np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=2e-5, atol=2e-6, err_msg=name)
