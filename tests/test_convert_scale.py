"""Conversion and loading keep memory near the weights' bytes: a random checkpoint in fla-hub's HGRN2 layout (bf16,
two shards + index, Llama-2-style tokenizer files), about 46M parameters, converted and loaded each in a fresh
process whose peak RSS is compared with the floor of a process that only imports Paddle and paddle_lrnn
(tools/bench.py --section scale runs the same at 1.3B)."""
import json
import os

import numpy as np
import paddle
import pytest

from paddle_lrnn.convert import convert
from paddle_lrnn.convert.hgrn2 import from_torch
from paddle_lrnn.convert.scale import measure, write_hgrn2_checkpoint
from paddle_lrnn.io import safetensors_entries
from paddle_lrnn.models import AutoModelForCausalLM

MiB = 1 << 20


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("scale")
    weights = write_hgrn2_checkpoint(str(d / "src"), hidden_size=512, num_hidden_layers=4, vocab_size=32000)
    return d, weights


@pytest.mark.slow
def test_convert_and_load_memory_scale_with_the_weights(checkpoint):
    d, weights = checkpoint
    src, out = str(d / "src"), str(d / "out")
    index = json.load(open(os.path.join(src, "model.safetensors.index.json")))
    assert len(set(index["weight_map"].values())) == 2
    largest_shard = max(os.path.getsize(os.path.join(src, f)) for f in set(index["weight_map"].values()))
    _, floor = measure("floor")
    _, converting = measure("convert", src, out)
    assert {dtype for dtype, _ in safetensors_entries(os.path.join(out, "model.safetensors")).values()} == {"bfloat16"}
    assert os.path.isfile(os.path.join(out, "tokenizer.json"))  # the checkpoint's own tokenizer, carried
    assert converting - floor <= largest_shard + 64 * MiB, (converting - floor) / MiB
    _, loading = measure("load", out=out)
    assert loading - floor <= 1.3 * weights, (loading - floor) / weights
    _, loading32 = measure("load", out=out, dtype="float32")
    assert loading32 - floor <= 1.3 * 2 * weights, (loading32 - floor) / (2 * weights)


def test_converted_model_matches_the_checkpoint_in_float32(checkpoint):
    d, _ = checkpoint
    src, out = str(d / "src"), str(d / "out32")
    convert("hgrn2", src, out, dtype="float32", log=lambda *_: None)
    assert {dt for dt, _ in safetensors_entries(os.path.join(out, "model.safetensors")).values()} == {"float32"}
    loaded = AutoModelForCausalLM.from_pretrained(out)
    direct = from_torch(src, dtype="float32")
    ids = paddle.to_tensor([[1, 17, 300, 4000, 2]])
    np.testing.assert_array_equal(loaded(ids).logits.numpy(), direct(ids).logits.numpy())
    stored = from_torch(src)  # as stored: bfloat16, the same values
    for (n, p), (_, q) in zip(stored.named_parameters(), loaded.named_parameters()):
        assert p.dtype == paddle.bfloat16
        np.testing.assert_array_equal(p.astype("float32").numpy(), q.numpy(), err_msg=n)


def test_sharded_output_loads_as_one(checkpoint, tmp_path):
    d, weights = checkpoint
    out = str(tmp_path / "sharded")
    convert("hgrn2", str(d / "src"), out, max_shard_size=weights // 3, log=lambda *_: None)
    index = json.load(open(os.path.join(out, "model.safetensors.index.json")))
    assert len(set(index["weight_map"].values())) >= 3 and index["metadata"]["total_size"] == weights
    assert not os.path.exists(os.path.join(out, "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(out)
    assert {p.dtype for p in model.parameters()} == {paddle.bfloat16}
    model.save_pretrained(out)  # one file now (under the default shard size): the shards and index are removed
    weight_files = sorted(n for n in os.listdir(out) if n.startswith("model"))
    assert weight_files == ["model.safetensors"], weight_files
    again = AutoModelForCausalLM.from_pretrained(out)
    for (n, p), (_, q) in zip(model.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)
