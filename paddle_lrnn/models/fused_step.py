"""What the models with a fused CPU decoding step share (RWKV-v2's and RWKV-4's): when a single-token step may run as
the one operator call, and the list of weights the operator reads."""
import paddle


class FusedStepMixin:
    """Mixed into a PretrainedModel with an `emb` embedding and a method fused_weight_names() (its parameter names in
    the order its step operator takes them).

    Single-token steps on CPU/float32 without gradients go through the fused operator; fused_step = False (on the
    class or an instance) runs the layers one by one instead. The operator reads the parameter tensors collected on
    its first use: after assigning new Parameter or sub-layer objects (set_value and .to() are fine), reset
    _fused_weights to None."""

    fused_step = True
    _fused_weights = None

    def _fusable(self, input_ids, state):
        """Whether this step can run fused: CPU, float32 weights, int64 ids, a state of float32 and int64 tensors,
        no gradients, not traced (a traced program keeps the layers, which any device runs)."""
        weight = self.emb.weight
        return (self.fused_step and paddle.in_dynamic_mode() and not paddle.is_grad_enabled()
                and weight.dtype == paddle.float32 and weight.place.is_cpu_place() and input_ids.dtype == paddle.int64
                and all(v.dtype in (paddle.float32, paddle.int64) for v in state.values()))

    def _fused_step_weights(self):
        if self._fused_weights is None:
            params = dict(self.named_parameters())
            self._fused_weights = [params[n] for n in self.fused_weight_names()]
        return self._fused_weights
