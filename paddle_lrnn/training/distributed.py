"""Data-parallel training: which process this is, and the few collectives the trainer needs.

`python -m paddle.distributed.launch --gpus 0,1,2,3 tools/train.py ...` (or --nproc_per_node N on CPU, where Paddle
uses its gloo backend) starts one process per device with PADDLE_TRAINERS_NUM etc. in the environment; a plain
`python tools/train.py` is world size 1 and calls no collective at all. Every rank runs the same global batch
sampler and trains on its own rows of each batch (Batch.shard), so N processes with a global batch of B sequences
compute what one process computes with B: the batch's mean loss and its gradient, the gradients averaged over the
ranks by all_reduce_gradients (summed in float32, divided by N), up to float rounding.

Optimizer-state sharding (--sharding, ZeRO stage 1): each parameter gets one owner rank (partition), each rank's
optimizer holds the moments of its own parameters only (1/N of Adam's state per rank), and after the update each
owner broadcasts its parameters (broadcast_from_owners). Gradients are all-reduced as without sharding, so every
rank clips with the global norm of all of them and the update is the unsharded one, bit for bit. Written here
rather than with paddle.distributed.sharding.group_sharded_parallel: that one refuses to run on CPU ("group_sharded_
parallel only support gpu, xpu and custom_device now", Paddle 3.3.1), so it could not be tested where CI runs, and
its stage-2 wrapper reduces gradients inside the backward pass, which leaves ranks waiting on each other when one of
them stops at a non-finite loss.
"""
import os

import numpy as np
import paddle

BUCKET_BYTES = 32 << 20  # gradients are all-reduced in flat buckets of about this size (few calls, bounded memory)


def environment_world_size():
    """The number of processes paddle.distributed.launch started (1 for a plain run)."""
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


class Parallel:
    """This process's place in a data-parallel run. Parallel() is the single process; Parallel.from_environment()
    joins the processes paddle.distributed.launch started (after paddle.set_device). With world_size 1 every method
    returns at once without communicating."""

    def __init__(self, rank=0, world_size=1):
        self.rank, self.world_size = int(rank), int(world_size)

    @classmethod
    def from_environment(cls):
        if environment_world_size() <= 1:
            return cls()
        import paddle.distributed as dist

        if not dist.is_initialized():
            dist.init_parallel_env()
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def is_main(self):
        """Rank 0: the one process that prints, and writes metrics, checkpoints and the model."""
        return self.rank == 0

    def __repr__(self):
        return f"Parallel(rank={self.rank}, world_size={self.world_size})"

    def all_reduce_sum(self, values):
        """Sums a few Python numbers over the ranks (in float64); returns a list of floats."""
        if self.world_size == 1:
            return [float(v) for v in values]
        import paddle.distributed as dist

        t = paddle.to_tensor(np.asarray(values, np.float64))
        dist.all_reduce(t)
        return [float(v) for v in t.numpy()]

    def all_reduce_gradients(self, params):
        """Replaces each gradient by its mean over the ranks. Every rank must pass the same parameters in the same
        order; parameters without a gradient are skipped (the same ones on every rank: one model, one batch shape)."""
        if self.world_size == 1:
            return
        import paddle.distributed as dist

        with paddle.no_grad():
            for bucket in _buckets([p.grad for p in params if p.grad is not None]):
                flat = paddle.concat([g.reshape([-1]) for g in bucket])
                dist.all_reduce(flat)
                flat = flat * (1.0 / self.world_size)
                offset = 0
                for g in bucket:
                    g.set_value(flat[offset:offset + g.size].reshape(g.shape))
                    offset += g.size

    def broadcast_parameters(self, params, src=0):
        """Copies rank src's values of the parameters to every rank."""
        if self.world_size == 1:
            return
        self.broadcast_from_owners(params, [src] * len(params))

    def broadcast_from_owners(self, params, owners):
        """Sets every parameter to its owner's value (owners[i] is the rank of params[i]), one flat broadcast per
        owner and bucket."""
        if self.world_size == 1:
            return
        import paddle.distributed as dist

        with paddle.no_grad():
            for owner in range(self.world_size):
                for bucket in _buckets([p for p, o in zip(params, owners) if o == owner]):
                    flat = paddle.concat([p.reshape([-1]) for p in bucket])
                    dist.broadcast(flat, src=owner)
                    if owner != self.rank:
                        offset = 0
                        for p in bucket:
                            p.set_value(flat[offset:offset + p.size].reshape(p.shape))
                            offset += p.size

    def gather(self, obj):
        """Rank 0 gets [obj of rank 0, obj of rank 1, ...] (picklable objects, e.g. numpy arrays); the others get
        None. Point to point, so only rank 0 holds them all."""
        if self.world_size == 1:
            return [obj]
        import paddle.distributed as dist

        if not self.is_main:
            dist.send_object_list([obj], dst=0)
            return None
        gathered = [obj]
        for src in range(1, self.world_size):
            box = [None]
            dist.recv_object_list(box, src=src)
            gathered.append(box[0])
        return gathered

    def barrier(self):
        if self.world_size > 1:
            import paddle.distributed as dist

            dist.barrier()


def _buckets(tensors):
    """Consecutive groups of tensors of one dtype and about BUCKET_BYTES together."""
    bucket, size = [], 0
    for t in tensors:
        nbytes = t.size * t.element_size()
        if bucket and (size + nbytes > BUCKET_BYTES or t.dtype != bucket[0].dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += nbytes
    if bucket:
        yield bucket


def partition(params, world_size):
    """The owner rank of each parameter for optimizer-state sharding: largest first, each onto the rank that holds
    the fewest elements so far (the lower rank on ties), so that every rank computes the same split."""
    load = [0] * world_size
    owners = [0] * len(params)
    for i in sorted(range(len(params)), key=lambda i: (-params[i].size, i)):
        owner = min(range(world_size), key=lambda r: (load[r], r))
        owners[i] = owner
        load[owner] += params[i].size
    return owners
