"""paddle_lrnn's models inside PaddleNLP and PaddleFormers (paddle_lrnn.integrations), once per library (conftest):
their Auto classes load our model directories, their generate() decodes as generate_ids does and beam search finds
the best beams, their Trainer trains and resumes exactly, and what they save loads back in paddle_lrnn."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from integration_support import VARIANT_IDS, VARIANTS, continuation_log_probs, tiny_model, without_eos
from paddle_lrnn.generation import generate_ids
from paddle_lrnn.models import AutoModelForCausalLM as LrnnAutoModel
from paddle_lrnn.models import FAMILIES, ModelFileError

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = [[3, 5, 7, 1, 2, 8, 4], [9, 9, 0, 4, 11, 2, 6]]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{variant id: (paddle_lrnn model, the directory it was saved in)}, made once."""
    root = tmp_path_factory.mktemp("saved")
    models = {}
    for vid, (model_type, options) in zip(VARIANT_IDS, VARIANTS):
        model = tiny_model(model_type, **options)
        model.save_pretrained(str(root / vid))
        models[vid] = (model, str(root / vid))
    return models


def load(auto, saved, vid):
    lrnn, directory = saved[vid]
    return lrnn, without_eos(auto[1].from_pretrained(directory))


class InputLengths:
    """Records the input_ids shape of every forward of the paddle_lrnn model inside a library model."""

    def __init__(self, model):
        self.shapes = []
        self.handle = model.lrnn.register_forward_pre_hook(lambda layer, inputs: self.shapes.append(
            list(inputs[0].shape)))

    def __enter__(self):
        return self.shapes

    def __exit__(self, *exc):
        self.handle.remove()


def assert_one_token_per_step(shapes, rows, prompt_length, new_tokens):
    """The prompt once, then only the newest token of each row: O(1) model work per generated token."""
    assert shapes == [[rows, prompt_length]] + [[rows, 1]] * (new_tokens - 1)


def test_every_family_is_registered(integration):
    assert sorted(integration.MODEL_CLASSES) == sorted(FAMILIES)
    for model_type, model_class in integration.MODEL_CLASSES.items():
        assert getattr(integration, model_class.__name__) is model_class
        assert model_class.config_class.model_type == model_type


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_auto_classes_load_a_paddle_lrnn_directory(auto, integration, saved, vid):
    lrnn, directory = saved[vid]
    config = auto[0].from_pretrained(directory)
    model = auto[1].from_pretrained(directory)
    model_class = integration.MODEL_CLASSES[lrnn.config.model_type]
    assert type(config) is model_class.config_class and type(model) is model_class
    assert config.to_lrnn_config().to_dict() == lrnn.config.to_dict()
    params = dict(lrnn.named_parameters())
    state = model.state_dict()
    assert sorted(state) == sorted(params)  # paddle_lrnn's names, no prefix
    for name, value in state.items():
        np.testing.assert_array_equal(value.numpy(), params[name].numpy(), err_msg=name)
    ids = paddle.to_tensor(PROMPTS)
    np.testing.assert_array_equal(model(input_ids=ids).logits.numpy(), lrnn(ids).logits.numpy())
    half = auto[1].from_pretrained(directory, dtype="bfloat16")  # cast as paddle_lrnn's loader casts
    assert {str(p.dtype) for p in half.parameters()} == {"paddle.bfloat16"}
    fresh = auto[1].from_config(config)  # a new model of that config, initialised as paddle_lrnn initialises it
    assert type(fresh) is model_class and sorted(fresh.state_dict()) == sorted(params)


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_greedy_generate_equals_generate_ids(auto, saved, vid):
    lrnn, model = load(auto, saved, vid)
    with InputLengths(model) as shapes:
        out, _ = model.generate(paddle.to_tensor(PROMPTS), max_new_tokens=20, decode_strategy="greedy_search")
    for row, prompt in zip(out.numpy().tolist(), PROMPTS):
        assert row == list(generate_ids(lrnn, prompt, 20, temperature=0))
    assert_one_token_per_step(shapes, 2, len(PROMPTS[0]), 20)


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_generation_stops_at_eos(auto, saved, vid):
    lrnn, model = load(auto, saved, vid)
    expected = list(generate_ids(lrnn, PROMPTS[0], 20, temperature=0))
    eos = expected[4]
    out, _ = model.generate(paddle.to_tensor(PROMPTS[:1]), max_new_tokens=20, decode_strategy="greedy_search",
                            eos_token_id=eos)
    assert out.numpy().tolist()[0] == expected[:expected.index(eos) + 1]


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_sampling_decodes_on_the_state(auto, saved, vid):
    """top_k=1 sampling is greedy decoding through the sampling path; full sampling repeats under one seed and
    returns num_return_sequences rows of valid ids."""
    lrnn, model = load(auto, saved, vid)
    prompt = paddle.to_tensor(PROMPTS[:1])
    out, _ = model.generate(prompt, max_new_tokens=12, decode_strategy="sampling", top_k=1)
    assert out.numpy().tolist()[0] == list(generate_ids(lrnn, PROMPTS[0], 12, temperature=0))
    runs = []
    for _ in range(2):
        paddle.seed(5)
        with InputLengths(model) as shapes:
            runs.append(model.generate(prompt, max_new_tokens=12, decode_strategy="sampling", temperature=1.5,
                                       num_return_sequences=3)[0].numpy())
        assert_one_token_per_step(shapes, 3, len(PROMPTS[0]), 12)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].shape == (3, 12) and runs[0].min() >= 0 and runs[0].max() < lrnn.config.vocab_size


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_beam_search_returns_the_best_beams(auto, integration, vid, tmp_path):
    """With a vocabulary of 5 and 25 beams, beam search over 3 new tokens keeps every 2-token prefix, so its top 3
    must be the 3 most probable of all 125 continuations, as an exhaustive search over paddle_lrnn's parallel forward
    finds them. The kept beams are reordered every step: a state reordered wrongly (or not at all) scores other
    prefixes' continuations and fails this. Two prompts check the beams of each row stay with their row."""
    model_type, options = VARIANTS[VARIANT_IDS.index(vid)]
    lrnn = tiny_model(model_type, vocab_size=5, **options)
    lrnn.save_pretrained(str(tmp_path))
    model = without_eos(auto[1].from_pretrained(str(tmp_path)))
    prompts = [[1, 4, 2, 0], [3, 3, 1, 2]]
    with InputLengths(model) as shapes:
        out, scores = model.generate(paddle.to_tensor(prompts), max_new_tokens=3, decode_strategy="beam_search",
                                     num_beams=25, num_return_sequences=3, length_penalty=0.0)
    assert_one_token_per_step(shapes, 2 * 25, 4, 3)
    out, scores = out.numpy().reshape(2, 3, 3), scores.numpy().reshape(2, 3)
    for row, prompt in enumerate(prompts):
        exhaustive = continuation_log_probs(lrnn, prompt, 3)
        best = sorted(exhaustive, key=exhaustive.get, reverse=True)[:3]
        assert [tuple(seq) for seq in out[row].tolist()] == best
        np.testing.assert_allclose(scores[row], [exhaustive[b] for b in best], rtol=0, atol=1e-4)


def test_state_batch_axes(integration, saved):
    """reorder_cache indexes each state tensor along its own batch axis (found by probing batches of 1 and 2)."""
    axes = {vid: integration.MODEL_CLASSES[lrnn.config.model_type](
        integration.MODEL_CLASSES[lrnn.config.model_type].config_class(**lrnn.config.to_dict()),
        lrnn_model=lrnn).state_batch_axes() for vid, (lrnn, _) in saved.items()}
    assert axes["rwkv2"] == {"wkv": 1, "att_shift": 1, "ffn_shift": 1, "head_keys": 0, "head_ids": 0}
    assert axes["mru-layers"] == {"mru": 1, "attn_keys": 1, "attn_values": 1, "attn_position": None}
    assert axes["hgrn2-use_short_conv"] == {"recurrent": 1, "conv_q": 1, "conv_f": 1, "conv_i": 1}


def test_forward_loss_from_labels(auto, saved):
    """labels are the targets of each position (already shifted, as the libraries' causal LMs take them); -100 is
    ignored; a mask may pad the end of a row but not its start."""
    for vid in VARIANT_IDS[:len(FAMILIES)]:
        lrnn, model = load(auto, saved, vid)
        ids = paddle.to_tensor(PROMPTS)
        labels = np.array(PROMPTS)[:, 1:].tolist()
        labels = paddle.to_tensor([row + [-100] for row in labels])
        out = model(input_ids=ids, labels=labels)
        logits = lrnn(ids).logits
        expected = F.cross_entropy(logits[:, :-1].reshape([-1, logits.shape[-1]]), ids[:, 1:].reshape([-1]))
        np.testing.assert_allclose(float(out.loss), float(expected), rtol=1e-6)
        right = paddle.to_tensor([[1] * 7, [1] * 5 + [0] * 2])
        np.testing.assert_allclose(float(model(input_ids=ids, labels=labels, attention_mask=right).loss),
                                   float(out.loss), rtol=1e-6)
        with pytest.raises(ValueError, match="padding before real tokens"):
            model(input_ids=ids, labels=labels, attention_mask=paddle.to_tensor([[1] * 7, [0] * 2 + [1] * 5]))
        loss, logits_tuple = model(input_ids=ids, labels=labels, return_dict=False)
        np.testing.assert_array_equal(logits_tuple.numpy(), logits.numpy())


def test_generate_refuses_a_padded_prompt(auto, saved):
    _, model = load(auto, saved, VARIANT_IDS[0])
    with pytest.raises(ValueError, match="padding in the prompt"):
        model.generate(paddle.to_tensor(PROMPTS), attention_mask=paddle.to_tensor([[1] * 7, [0] + [1] * 6]),
                       max_new_tokens=3, decode_strategy="greedy_search")


@pytest.mark.parametrize("vid", VARIANT_IDS)
def test_what_the_library_saves_loads_back_in_paddle_lrnn(auto, library, saved, vid, tmp_path):
    lrnn, model = load(auto, saved, vid)
    model.config.eos_token_id = 7  # a library field: it must survive in config.json
    model.save_pretrained(str(tmp_path / "safe"), safe_serialization=True)
    back = LrnnAutoModel.from_pretrained(str(tmp_path / "safe"))
    assert back.config.to_dict()["eos_token_id"] == 7 and type(back) is type(lrnn)
    for name, param in lrnn.named_parameters():
        np.testing.assert_array_equal(dict(back.named_parameters())[name].numpy(), param.numpy(), err_msg=name)
    again = auto[1].from_pretrained(str(tmp_path / "safe"))  # and in the library, with its own fields
    assert again.config.eos_token_id == 7
    model.save_pretrained(str(tmp_path / "default"))
    if library == "paddlenlp":  # PaddleNLP's default is a pickle, which is refused with what to do instead
        with pytest.raises(ModelFileError, match="safe_serialization=True"):
            auto[1].from_pretrained(str(tmp_path / "default"))
    else:
        LrnnAutoModel.from_pretrained(str(tmp_path / "default"))


def test_directory_names_do_not_mislead_the_auto_class(auto, integration, saved, tmp_path):
    """The libraries guess classes from substrings of the path (PaddleFormers takes ".../qwen2-hgrn2" for Qwen2);
    a paddle_lrnn directory is recognised by its config.json first."""
    lrnn, directory = saved[VARIANT_IDS[0]]
    shutil.copytree(directory, tmp_path / "qwen2-llama-gpt-bert")
    model = auto[1].from_pretrained(str(tmp_path / "qwen2-llama-gpt-bert"))
    assert type(model) is integration.MODEL_CLASSES[lrnn.config.model_type]


def test_from_pretrained_refuses_what_it_cannot_honour(auto, integration, saved):
    lrnn, directory = saved[VARIANT_IDS[0]]
    with pytest.raises(TypeError, match="convert_from_torch.*paddle-lrnn-convert"):
        auto[1].from_pretrained(directory, convert_from_torch=True)
    with pytest.raises(ModelFileError, match="does not exist"):
        integration.MODEL_CLASSES[lrnn.config.model_type].from_pretrained(os.path.join(directory, "missing"))


def test_config_values_are_checked_by_paddle_lrnn(integration):
    for model_class in integration.MODEL_CLASSES.values():
        with pytest.raises(ValueError, match="vocab_size"):
            model_class.config_class(vocab_size=0)


def test_trainer_trains_and_resumes_exactly(library, tmp_path):
    """10 steps of every family, loaded from a paddle_lrnn directory, with the library's Trainer (README's settings),
    then the same run resumed from its step-5 checkpoint in a new process: the parameters after step 10 are identical (MRU trains with dropout, so the
    RNG state is restored too). The loss falls, and the checkpoint and the saved model load in paddle_lrnn."""
    script = os.path.join(HERE, "train_run.py")
    for mode in ("full", "resume"):
        subprocess.run([sys.executable, script, library, mode, str(tmp_path)], check=True, capture_output=True)
    for model_type in sorted(FAMILIES):
        run = tmp_path / model_type
        # training the loaded model never writes through to the file it was loaded from
        weights = (run / "base" / "model.safetensors").read_bytes()
        assert hashlib.sha256(weights).hexdigest() == (run / "base.sha256").read_text()
        full, resumed = np.load(run / "final-full.npz"), np.load(run / "final-resume.npz")
        assert sorted(full) == sorted(resumed)
        for name in full:
            np.testing.assert_array_equal(resumed[name], full[name], err_msg=f"{model_type} {name}")
        losses = json.loads((run / "losses.json").read_text())
        assert len(losses) == 10 and np.mean(losses[-3:]) < losses[0], (model_type, losses)
        for saved_dir in (run / "checkpoint-10", run / "final"):
            back = LrnnAutoModel.from_pretrained(str(saved_dir))
            for name, param in back.named_parameters():
                np.testing.assert_array_equal(param.numpy(), full[name], err_msg=f"{saved_dir} {name}")


def test_readme_example_runs(library, tmp_path):
    """README's five lines for the library, on a tiny model in place of out/austen; what they save loads back."""
    readme = open(os.path.join(HERE, "..", "..", "README.md"), encoding="utf-8").read()
    section = readme.split("## PaddleNLP and PaddleFormers", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    (code,) = [b for b in blocks if f"paddle_lrnn.integrations.{library}" in b]
    lrnn = tiny_model(VARIANTS[0][0], vocab_size=64)
    lrnn.save_pretrained(str(tmp_path / "austen"))
    exec(code.replace('"out/austen', f'"{tmp_path}/austen'), {})
    (out_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("austen-")]
    back = LrnnAutoModel.from_pretrained(str(out_dir))
    for name, param in lrnn.named_parameters():
        np.testing.assert_array_equal(dict(back.named_parameters())[name].numpy(), param.numpy(), err_msg=name)
