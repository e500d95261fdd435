"""Shared test helpers: run a function forward and backward with given cotangents, compare with tolerances."""
import numpy as np
import paddle


def run_with_grads(fn, inputs, cotangents, grad_of=None):
    """Calls fn(*inputs) (numpy arrays or None), then backpropagates sum(out_i * cotangent_i).

    Returns (outputs as numpy, gradients as numpy for the inputs listed in grad_of, default all non-None)."""
    tensors = [None if x is None else paddle.to_tensor(x, stop_gradient=False) for x in inputs]
    outs = fn(*tensors)
    outs = outs if isinstance(outs, (tuple, list)) else [outs]
    loss = sum((o.astype("float64") * paddle.to_tensor(c, dtype="float64")).sum()
               for o, c in zip(outs, cotangents) if c is not None)
    idx = [i for i, t in enumerate(tensors) if t is not None] if grad_of is None else grad_of
    grads = paddle.grad(loss, [tensors[i] for i in idx], allow_unused=True)
    return [o.astype("float64").numpy() for o in outs], [None if g is None else g.astype("float64").numpy() for g in grads]


def assert_close(actual, expected, rtol, atol_scale, name=""):
    """allclose with an absolute tolerance relative to the largest expected magnitude."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    assert np.isfinite(actual).all(), f"{name}: non-finite values"
    atol = atol_scale * max(np.abs(expected).max(), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=name)


def finite_difference(fn, inputs, cotangent_fn, index, eps=1e-6):
    """Central differences of L = cotangent_fn(fn(*inputs)) w.r.t. inputs[index] (float64 numpy arrays)."""
    x = inputs[index]
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        vals = []
        for step in (eps, -eps):
            flat[i] = old + step
            args = [None if a is None else paddle.to_tensor(a) for a in inputs]
            vals.append(cotangent_fn(fn(*args)))
        flat[i] = old
        grad.reshape(-1)[i] = (vals[0] - vals[1]) / (2 * eps)
    return grad
