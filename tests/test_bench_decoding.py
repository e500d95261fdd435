"""The figures the decoding benchmarks (tools/bench.py --section scale, generation, rwkv4-generation) are made of:
the weight bytes a token reads, per weight format, and the decoding timer's step count."""
import numpy as np
import paddle

from paddle_lrnn.convert.scale import timed_decoding, token_weight_bytes
from paddle_lrnn.layers.linear import Embedding, weight_only_layers
from paddle_lrnn.models.hgrn2 import HGRN2Config, HGRN2ForCausalLM
from paddle_lrnn.models.quantization import quantize_int8_


def small_hgrn2(tie):
    paddle.seed(0)
    return HGRN2ForCausalLM(HGRN2Config(vocab_size=300, hidden_size=64, num_hidden_layers=2, expand_ratio=16,
                                        tie_word_embeddings=tie))


def nbytes(p):
    return int(np.prod(p.shape)) * p.element_size()


def test_a_looked_up_embedding_is_not_read_whole_but_a_tied_head_is():
    untied, tied = small_hgrn2(False), small_hgrn2(True)
    emb = nbytes(untied.model.embeddings.weight)
    assert token_weight_bytes(untied) == sum(nbytes(p) for p in untied.parameters()) - emb
    assert token_weight_bytes(tied) == sum(nbytes(p) for p in tied.parameters())


def test_int8_reads_one_byte_per_matrix_weight_plus_its_scales():
    model = small_hgrn2(False)
    before = token_weight_bytes(model)
    matrices = {name: layer for name, layer in weight_only_layers(model).items() if not isinstance(layer, Embedding)}
    weights = sum(nbytes(layer.weight) for layer in matrices.values())
    scales = sum(layer.weight.shape[1] * 4 for layer in matrices.values())
    quantize_int8_(model)
    assert token_weight_bytes(model) == before - weights + weights // 4 + scales


def test_timed_decoding_times_every_step_after_the_prompt_alone_and_batched():
    model = small_hgrn2(False)
    for prompts in ([1, 2, 3], [[1, 2, 3], [4, 5]]):
        ms, prefill = timed_decoding(model, prompts, 3)
        assert ms > 0 and prefill > 0
