"""HGRN2 training and generation: the recipe (the WikiText-103 one as the reference establishes it, the CPU one),
a short word-level run on a small directory in WikiText's format made from the embedded corpus (val_ppl per word
in metrics.jsonl), --eval-only's test_ppl, byte-level data (enwik8's form), and generation with word-level
detokenisation, through the library and through the tools."""
import json
import math
import os
import re

import numpy as np
import paddle
import pytest
from helpers import run_tool as tool

from paddle_lrnn.data import DEFAULT_CORPUS, load_vocab
from paddle_lrnn.generation import generate_ids, generate_text
from paddle_lrnn.models import AutoModelForCausalLM
from paddle_lrnn.models.hgrn2 import HGRN2ForCausalLM
from paddle_lrnn.training import metrics
from paddle_lrnn.training.evaluation import evaluate_model_dir
from paddle_lrnn.training.recipes import model_config, resolve
from paddle_lrnn.training.trainer import Trainer


def wikitextify(paragraph):
    """A paragraph in WikiText's token format: words and punctuation separated by single spaces, a leading space."""
    return " " + " ".join(re.findall(r"\w+|[^\w\s]", paragraph)) + " "


@pytest.fixture(scope="module")
def wikitext_dir(tmp_path_factory):
    """wiki.{train,valid,test}.tokens from Sense and Sensibility: a heading line, paragraphs, empty lines."""
    with open(DEFAULT_CORPUS, encoding="utf-8") as f:
        text = f.read(400_000)
    chapters = re.split(r"\n\s*CHAPTER \d+\s*\n", text)[1:13]
    d = tmp_path_factory.mktemp("wikitext-tiny")
    parts = {"train": chapters[:10], "valid": chapters[10:11], "test": chapters[11:12]}
    for split, chs in parts.items():
        lines = []
        for n, ch in enumerate(chs):
            lines += ["", f" = Chapter {n + 1} = ", ""]
            lines += [wikitextify(p.replace("\n", " ")) for p in ch.split("\n\n") if p.strip()]
        (d / f"wiki.{split}.tokens").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(d)


def tiny_settings(data, out, **overrides):
    settings = dict(model="hgrn2", data=data, out=str(out), device="cpu", n_layer=2, n_embd=32, ctx_len=32,
                    batch_size=8, grad_accum=2, max_steps=12, eval_interval=6, eval_iters=4, lr=1e-2, lr_final=1e-3,
                    warmup_steps=2, sample_length=12, seed=5, vocab="words",
                    model_options=dict(expand_ratio=8))
    settings.update(overrides)
    return resolve(settings)


# ------------------------------------------------------------------------------------------------------- recipes
def test_wt103_recipe_is_the_reference_s():
    cfg = resolve(dict(model="hgrn2", preset="wt103", device="cpu", vocab="words"))
    established = dict(beta1=0.9, beta2=0.98, weight_decay=0.1, grad_clip=1.0, lr=5e-4, schedule="inverse_sqrt",
                       warmup_steps=4000, ctx_len=512, batch_size=128, max_steps=50_000, optimizer="adamw")
    assert {k: getattr(cfg, k) for k in established} == established
    assert cfg.batch_size * cfg.ctx_len == 65_536 and cfg.batch_size // cfg.grad_accum == 16
    assert cfg.model_options["tie_word_embeddings"] is True
    from paddle_lrnn.training.schedule import lr_at

    kw = dict(schedule=cfg.schedule, lr=cfg.lr, lr_final=cfg.lr_final, warmup_steps=4000, max_steps=cfg.max_steps)
    assert lr_at(0, **kw) == pytest.approx(1e-7) and lr_at(4000, **kw) == pytest.approx(5e-4)
    assert lr_at(16000, **kw) == pytest.approx(2.5e-4)  # lr * sqrt(warmup / step)
    model_cfg = model_config(cfg, 50265)
    assert (model_cfg.hidden_size, model_cfg.num_hidden_layers, model_cfg.num_heads, model_cfg.expand_ratio,
            model_cfg.mlp_intermediate_size, model_cfg.tie_word_embeddings) == (512, 6, 4, 128, 1536, True)
    # the preset's own tokenisation is GPT-2 BPE, which needs the tokenizer files
    with pytest.raises(ValueError, match="--vocab gpt2 needs the GPT-2 tokenizer files"):
        resolve(dict(model="hgrn2", preset="wt103", device="gpu"))
    assert resolve(dict(model="hgrn2", preset="wt103", tokenizer="/gpt2")).vocab == "gpt2"
    # --model-option adds to the recipe's model options
    cfg = resolve(dict(model="hgrn2", preset="wt103", vocab="words", model_options=dict(use_short_conv=True)))
    assert cfg.model_options == dict(expand_ratio=128, tie_word_embeddings=True, use_short_conv=True)


def test_cpu_recipe_is_small():
    cfg = resolve(dict(model="hgrn2", device="cpu"))
    assert (cfg.vocab, cfg.data, cfg.grad_accum, cfg.schedule) == ("chars", None, 1, "cosine")
    model = HGRN2ForCausalLM(model_config(cfg, 81))
    assert model.num_parameters() < 1_000_000


# -------------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(wikitext_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("hgrn2-words")
    t = Trainer(tiny_settings(wikitext_dir, out), log=lambda *_: None, progress=False)
    t.train()
    return str(out), t


def test_word_level_run_reports_perplexity_per_word(trained):
    out, t = trained
    records = metrics.read_records(os.path.join(out, "metrics.jsonl"))
    assert [r["step"] for r in records] == [6, 12]
    V = t.corpus.vocab_size
    assert V > 2000
    for r in records:
        assert r["tokenization"] == "words" and r["ppl_unit"] == "word"
        assert r["val_ppl"] == pytest.approx(math.exp(r["val_loss"]))
    assert records[-1]["val_ppl"] < records[0]["val_ppl"] < V  # learning, and far from uniform over the vocabulary
    assert records[-1]["tokens"] == 12 * 8 * 32
    model = AutoModelForCausalLM.from_pretrained(out)
    assert isinstance(model, HGRN2ForCausalLM) and model.config.tie_word_embeddings is True  # the recipe ties
    assert load_vocab(out).kind == "words"


def test_eval_only_reports_test_perplexity(trained, wikitext_dir):
    out, t = trained
    result = evaluate_model_dir(out, wikitext_dir, ctx_len=32, log=lambda *_: None)
    assert result["split"] == "test" and result["tokenization"] == "words" and result["ppl_unit"] == "word"
    assert result["test_ppl"] == pytest.approx(math.exp(result["test_loss"]))
    assert result["tokens"] == len(t.corpus.test) and 1 < result["test_ppl"] < t.corpus.vocab_size
    # windows of any length: HGRN2 has no context limit
    assert evaluate_model_dir(out, wikitext_dir, ctx_len=256, max_batches=1, log=lambda *_: None)["ctx_len"] == 256


def test_byte_level_data_trains(tmp_path):
    data = tmp_path / "enwik-tiny"
    with open(DEFAULT_CORPUS, "rb") as f:
        data.write_bytes(f.read(40_000) + "<page> naïve café – ünïcödé </page>\n".encode("utf-8") * 50)
    t = Trainer(tiny_settings(str(data), tmp_path / "out", vocab="bytes", max_steps=4, eval_interval=2,
                              eval_iters=2, sample_length=0), log=lambda *_: None, progress=False)
    t.train()
    assert t.corpus.vocab_size == 256 and t.model.config.vocab_size == 256
    record = metrics.read_records(str(tmp_path / "out" / "metrics.jsonl"))[-1]
    assert record["tokenization"] == "bytes" and record["bpc_unit"] == "byte" and record["ppl_unit"] == "byte"
    assert record["val_bpc"] == pytest.approx(record["val_loss"] / math.log(2))  # one byte per token
    result = evaluate_model_dir(str(tmp_path / "out"), str(data), ctx_len=64, log=lambda *_: None)
    assert result["bpc_unit"] == "byte" and result["test_ppl"] > 1


# ------------------------------------------------------------------------------------------------ generation
def test_generation_in_step_mode_equals_recomputing_the_whole_sequence(trained):
    out, t = trained
    model = AutoModelForCausalLM.from_pretrained(out)
    prompt = np.asarray(t.corpus.valid[:40]).tolist()
    fast = list(generate_ids(model, prompt, 15, temperature=0))
    ids = list(prompt)
    for _ in range(15):
        ids.append(int(np.argmax(model(paddle.to_tensor([ids])).logits.numpy()[0, -1])))
    assert fast == ids[len(prompt):]


def test_word_level_text_reads_naturally(trained):
    out, _ = trained
    pieces = list(generate_text(out, "Elinor was", 40, seed=2, top_p=0.9))
    assert pieces[0] == "Elinor was"
    generated = "".join(pieces[1:])
    text = "".join(pieces)
    assert generated.count("\n") + len(generated.split()) == 40  # one word or line break per token
    assert "  " not in text and "\n " not in text and "<eos>" not in text
    # the first new word is separated from the prompt (the decoder continues after it), every other one too
    assert all(piece == "\n" or piece.startswith(" ") for piece in pieces[1:-1] if piece)
    assert "".join(generate_text(out, "Elinor was\n", 3, seed=2))[len("Elinor was\n"):][:1] not in (" ", "")


@pytest.mark.slow
def test_tools_train_evaluate_and_generate(wikitext_dir, tmp_path):
    out = tmp_path / "m"
    result = tool("train", "--model", "hgrn2", "--data", wikitext_dir, "--vocab", "words", "--out", out,
                  "--n-layer", 1, "--n-embd", 16, "--model-option", "expand_ratio=4", "--model-option",
                  "use_short_conv=true", "--ctx-len", 16, "--batch-size", 4, "--grad-accum", 2, "--max-steps", 2, "--warmup-steps", 1,
                  "--eval-interval", 2, "--eval-iters", 1, "--sample-length", 5, "--device", "cpu", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "2 micro-batches of 2" in result.stdout and "sample:" in result.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "hgrn2" and cfg["use_short_conv"] is True and cfg["expand_ratio"] == 4
    result = tool("train", "--eval-only", "--model-dir", out, "--data", wikitext_dir, "--ctx-len", 64)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ppl_unit"] == "word" and report["test_ppl"] > 1 and report["ctx_len"] == 64
    result = tool("generate", "--model-dir", out, "--prompt", "She said", "--length", 12, "--seed", 1)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("She said") and "<eos>" not in result.stdout
    result = tool("train", "--model", "hgrn2", "--preset", "wt103", "--data", wikitext_dir, "--out", tmp_path / "x")
    assert result.returncode == 2 and result.stderr.strip() == ("error: --vocab gpt2 needs the GPT-2 tokenizer "
                                                                "files: pass --tokenizer DIR (a directory with "
                                                                "vocab.json and merges.txt), or choose --vocab words")
