"""Mixed-precision training (--amp bf16 | fp16), all in one place.

Level O1 of paddle.amp.auto_cast: the parameters, their gradients, the optimizer's state and the checkpoints stay
float32 (the parameters are the float32 master copy); inside the forward pass the operators on Paddle's white list
(matmul, linear, einsum) run in the half type, those on its black list (layer_norm, softmax, exp, log, reductions,
cross-entropy) in float32, and the rest in the type of their inputs. O2 (half-precision parameters with float32
master weights kept by the optimizer) would save parameter memory, small next to the activations for these models,
and would run every elementwise gate in half precision; it is not offered.

What the models' own operators receive: the layers cast the recurrences' inputs to float32 before calling them
(RWKV's exp(k) with k <= 60 overflows float16, and decays, gates and long matrix products lose too much in half
precision), and FP32_OPS puts the custom operators on auto_cast's black list as well, so that they would stay
float32 should Paddle auto-cast custom operators' inputs. Their states are float32 either way; the operators accept
half-precision inputs (accumulating in float32) for callers who pass them. Every model returns float32 logits, so
the loss is float32. RMSNorm computes in float32 itself; LayerNorm is on Paddle's black list.

float16 needs loss scaling (LossScaler); bfloat16 has float32's exponent range and needs none.

Paddle 3.3.1 runs no mixed precision on CPU: auto_cast there warns "amp_guard can only be enabled on CUDAPlace,
XPUPlace, and CustomPlace ... so it makes no effect", and its CPU kernels of matmul, einsum, layer_norm, softmax,
exp and cross_entropy have no bfloat16 or float16 version. recipes.validate therefore refuses --amp on CPU.
(paddle is imported where it is used: recipes reads AMP_MODES without it.)
"""
import contextlib

AMP_MODES = ("off", "bf16", "fp16")
HALF_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
# paddle_lrnn's custom operators (paddle_lrnn._C): kept in float32 under auto_cast (see the module docstring)
FP32_OPS = frozenset({"lrnn_wkv", "lrnn_timex", "lrnn_gla", "lrnn_mru_scan", "lrnn_rwkv2_step", "lrnn_rwkv4_step",
                      "lrnn_hgrn2_step", "lrnn_weight_matmul", "lrnn_quantize_int8"})


class LossScaler:
    """Dynamic loss scaling for float16: the loss is multiplied by `scale` before the backward pass, so that small
    gradients do not underflow float16; unscale() divides the gradients by it and says whether all are finite. An
    update with an inf or NaN gradient is skipped and halves the scale (not below min_scale); growth_interval finite
    updates in a row double it (not above max_scale). Scales are powers of two, so scaling and unscaling change no
    bit of a finite gradient.

    Not paddle.amp.GradScaler: that one is disabled on CPU (where this one is tested), and it decides about
    non-finite gradients from the optimizer's own parameters, which under --sharding are only this rank's share;
    this one looks at every gradient after the all-reduce, identical on every rank, so all ranks skip together."""

    def __init__(self, scale=2.0 ** 16, growth_interval=2000, min_scale=1.0, max_scale=2.0 ** 24):
        self.scale, self.growth_interval = float(scale), int(growth_interval)
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.good_steps = 0

    def unscale(self, params):
        """Divides every gradient by the scale; returns True if they are all finite."""
        import paddle

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return True
        with paddle.no_grad():
            for g in grads:
                g.set_value(g * (1.0 / self.scale))
            return bool(paddle.stack([paddle.isfinite(g).all() for g in grads]).all())

    def update(self, finite):
        if not finite:
            self.scale = max(self.scale / 2, self.min_scale)
            self.good_steps = 0
            return
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale = min(self.scale * 2, self.max_scale)
            self.good_steps = 0

    def state_dict(self):
        return {"scale": self.scale, "good_steps": self.good_steps}

    def load_state_dict(self, state):
        self.scale, self.good_steps = float(state["scale"]), int(state["good_steps"])


class MixedPrecision:
    """The run's precision policy: MixedPrecision("off" | "bf16" | "fp16").
      autocast()       the context for the forward pass and the loss
      scaler           a LossScaler for fp16, else None
      loss_scale       the factor the loss is multiplied by before backward (1.0 without a scaler)
      state_dict()     what a checkpoint keeps (the scaler's scale and count), load_state_dict(state)"""

    def __init__(self, mode="off"):
        if mode not in AMP_MODES:
            raise ValueError(f"--amp must be one of {', '.join(AMP_MODES)}, got {mode!r}")
        self.mode = mode
        self.dtype = HALF_DTYPES.get(mode)
        self.scaler = LossScaler() if mode == "fp16" else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        import paddle

        return paddle.amp.auto_cast(level="O1", dtype=self.dtype, custom_black_list=set(FP32_OPS))

    @property
    def loss_scale(self):
        return self.scaler.scale if self.scaler is not None else 1.0

    def state_dict(self):
        return {"mode": self.mode, "scaler": None if self.scaler is None else self.scaler.state_dict()}

    def load_state_dict(self, state):
        """Restores the scaler of a run saved with fp16; a run saved in another mode (or before --amp existed)
        leaves the fresh scaler as it is."""
        if self.scaler is not None and state and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
