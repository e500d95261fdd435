"""Optional integrations with the libraries Paddle users already use; the core package never imports them.

    import paddle_lrnn.integrations.paddlenlp       # pip install "paddle_lrnn[paddlenlp]"      (PaddleNLP 3.0.0b4)
    import paddle_lrnn.integrations.paddleformers   # pip install "paddle_lrnn[paddleformers]"  (PaddleFormers 1.2.0)

Importing one registers every model family (paddle_lrnn.models.auto.FAMILIES) with that library's AutoConfig and
AutoModelForCausalLM: a paddle_lrnn model directory (config.json + model.safetensors, from a converter, the train
tool or save_pretrained) loads there unchanged, its generate() decodes on the recurrent state (greedy, sampling,
beam search; one token per step after the prompt), its Trainer trains the model (forward takes labels), and what the
library saves as safetensors loads back in paddle_lrnn. See README.md, "PaddleNLP and PaddleFormers".
"""
