"""The sample a training run prints at its end: the model continuing the start of the validation split."""
import numpy as np

from ..generation import generate_ids


def sample_text(model, corpus, length, seed):
    """A continuation of the first line of the validation split (at most 64 tokens of it), as text."""
    prompt = np.asarray(corpus.valid[:64]).tolist()
    decoder = corpus.vocab.decoder()
    text = decoder.decode(prompt)
    text += decoder.decode(list(generate_ids(model, prompt, length, top_p=0.85, seed=seed)))
    return text + decoder.flush()
