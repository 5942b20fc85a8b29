"""``fuse_network``: a whole model made fast in one call, and ``unfuse_fire_modules``,
the way back.

Besides every Fire (``fuse_fire_modules``), ``fuse_network`` fuses the patterns of
SqueezeNet-style networks it finds in any ``nn.Sequential`` (not SqueezeNet by name):

* ``Conv2d -> ReLU (-> MaxPool2d)`` from an image's few channels (the stem) into
  :class:`FusedConvReluMaxPool`: one kernel, the conv's output never written, its
  output channels last, so the network runs channels-last from there on, whatever
  the caller's layout;
* ``MaxPool2d -> Fire``: the pool fused into the Fire's read of its input
  (``FusedFire.pool``), the pooled tensor never written;
* ``Conv2d 1x1 -> ReLU -> AdaptiveAvgPool2d(1)`` (the classifier; a Dropout before it
  stays as it is) into :class:`FusedConvReluAvgPool`: one kernel that never writes
  the conv's output, sparse where its pruned weights pay.

A module whose work its neighbour now does becomes a :class:`FusedAway`, which
computes nothing and remembers the module it stands for. Parameters, their objects
and ``state_dict`` keys stay as they were; ``unfuse_fire_modules`` restores the
plain modules.
"""

from __future__ import annotations

from torch import Tensor, nn

from . import functional as F
from .functional import Backend, Pool
from .module import FusedFire, Planned, check_backend, check_sparse_mode, fuse_fire_modules
from .validation import check_fire_input
from .weight_plan import SparseMode, WeightPlan, conv_weight, make_head_plan

__all__ = [
    "FusedAway",
    "FusedConvReluAvgPool",
    "FusedConvReluMaxPool",
    "fuse_network",
    "unfuse_fire_modules",
]

# The stem pattern's input channels at most: an image's (RGB, RGBA). The fused
# kernel is an im2col GEMM, tuned for few input channels.
_STEM_MAX_CHANNELS = 4


class FusedAway(nn.Module):
    """Stands, in a fused network, for a module whose work a neighbouring fused
    module does (a ReLU, a pool): the identity, keeping the module it replaced
    (``.original``, restored by ``unfuse_fire_modules``)."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        # Not a child: it has no parameters, and state_dict keys must not change.
        self.__dict__["original"] = original

    def forward(self, x: Tensor) -> Tensor:
        return x

    def extra_repr(self) -> str:
        return f"fused: {self.original}"


# What the fused convs keep beside an nn.Conv2d's own state.
_FUSED_STATE = ("_plan", "_sparse", "backend", "pool")


def _conv_from(cls, conv: nn.Conv2d):
    """An instance of ``cls`` (an nn.Conv2d subclass, or nn.Conv2d itself) with
    ``conv``'s state: the same Parameter objects, buffers, hooks and settings (its
    dicts copied, so the two modules never share a dict)."""
    new = cls.__new__(cls)
    new.__dict__.update({k: (v.copy() if isinstance(v, dict) else v)
                         for k, v in conv.__dict__.items() if k not in _FUSED_STATE})
    return new


class FusedConvReluMaxPool(nn.Conv2d):
    """``MaxPool2d(ReLU(Conv2d(x)))`` as one kernel (``fire_kernels.functional.conv_relu_maxpool``),
    built by ``fuse_network`` from a stem's conv (the same ``nn.Conv2d`` parameters and
    ``state_dict`` keys). The output is channels last. The pool is ``(kernel, stride,
    ceil_mode)``, ``(1, 1, False)`` for none."""

    @classmethod
    def from_modules(cls, conv: nn.Conv2d, pool: nn.MaxPool2d | None,
                     backend: Backend = "auto") -> FusedConvReluMaxPool:
        fused = _conv_from(cls, conv)
        fused.pool = _pool_of(pool) if pool is not None else (1, 1, False)
        fused.backend = check_backend(backend)
        return fused

    def forward(self, x: Tensor) -> Tensor:
        kernel, stride, ceil_mode = self.pool
        return F.conv_relu_maxpool(
            x, conv_weight(self), conv_weight(self, "bias"), stride=self.stride[0],
            padding=self.padding[0], pool_kernel=kernel, pool_stride=stride,
            pool_ceil_mode=ceil_mode, backend=self.backend,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, relu, max_pool={self.pool}, backend={self.backend!r}"


class FusedConvReluAvgPool(Planned, nn.Conv2d):
    """``AdaptiveAvgPool2d(1)(ReLU(Conv2d 1x1(x)))``, ``(N, O, 1, 1)``, as one kernel,
    built by ``fuse_network`` from a classifier's conv (the same parameters and
    ``state_dict`` keys). ``sparse`` as for :class:`FusedFire`: pruned weights run
    the sparse kernel where it pays (inference)."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, backend: Backend = "auto",
                  sparse: SparseMode = "auto") -> FusedConvReluAvgPool:
        fused = _conv_from(cls, conv)
        fused.backend = check_backend(backend)
        fused.sparse = sparse
        return fused

    @property
    def sparse(self) -> SparseMode:
        return self._sparse

    @sparse.setter
    def sparse(self, value: SparseMode) -> None:
        self.__dict__["_sparse"] = check_sparse_mode(value)
        self.__dict__["_plan"] = None

    def forward(self, x: Tensor) -> Tensor:
        check_fire_input(x, type(self).__name__, self.in_channels)
        return self._forward_planned(x, (self,))

    def _dense(self, x: Tensor) -> Tensor:
        return F.conv1x1_relu_avgpool(x, conv_weight(self), conv_weight(self, "bias"),
                                      backend=self.backend)

    def _make_plan(self, x: Tensor, sources: list[Tensor]) -> WeightPlan:
        return make_head_plan(self, self.backend, self._sparse, x, sources)

    def _run_plan(self, x: Tensor, plan: WeightPlan) -> Tensor:
        return F.head_planned(x, plan)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, relu, global_avg_pool, backend={self.backend!r}, "
                f"sparse={self._sparse!r}")


def _square(value) -> int | None:
    """An int for a square size (``3`` or ``(3, 3)``), else None."""
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    return None


def _pool_of(pool: nn.MaxPool2d) -> Pool:
    return (_square(pool.kernel_size), _square(pool.stride or pool.kernel_size),
            bool(pool.ceil_mode))


def _fusable_pool(m: nn.Module) -> bool:
    return (
        type(m) is nn.MaxPool2d and _square(m.kernel_size) is not None
        and _square(m.stride or m.kernel_size) is not None and _square(m.padding) == 0
        and _square(m.dilation) == 1 and not m.return_indices
    )


def _plain_square_conv(m: nn.Module) -> bool:
    return (
        type(m) is nn.Conv2d and m.groups == 1 and m.padding_mode == "zeros"
        and m.dilation == (1, 1) and isinstance(m.padding, tuple)
        and _square(m.kernel_size) is not None and _square(m.stride) is not None
        and _square(m.padding) is not None
    )


def _is_head(mods: list[nn.Module]) -> bool:
    """Conv2d 1x1 (stride 1, no padding) -> ReLU -> AdaptiveAvgPool2d(1)."""
    return (
        len(mods) >= 3 and _plain_square_conv(mods[0]) and mods[0].kernel_size == (1, 1)
        and mods[0].stride == (1, 1) and mods[0].padding == (0, 0)
        and type(mods[1]) is nn.ReLU and type(mods[2]) is nn.AdaptiveAvgPool2d
        and mods[2].output_size in (1, (1, 1))
    )


def _is_stem(mods: list[nn.Module]) -> bool:
    """Conv2d from few channels -> ReLU."""
    return (
        len(mods) >= 2 and _plain_square_conv(mods[0])
        and mods[0].in_channels <= _STEM_MAX_CHANNELS and type(mods[1]) is nn.ReLU
    )


def fuse_network(
    model: nn.Module, *, sparse: SparseMode = "auto", backend: Backend = "auto"
) -> nn.Module:
    """Fuses, in place, every Fire of ``model`` and the patterns around them listed
    in this module's docstring, and returns ``model``. Parameters (the same objects)
    and ``state_dict`` keys are unchanged; ``unfuse_fire_modules`` undoes it.

    Args:
        sparse: ``"auto"``, True or False for every fused module that can run its
            pruned weights sparse (the Fires, the classifier), as for FusedFire.
        backend: the backend of every fused module.
    """
    fuse_fire_modules(model, backend=backend)
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        i = 0
        while i < len(names):
            mods = [seq._modules[n] for n in names[i:i + 3]]
            if _is_head(mods):
                seq._modules[names[i]] = FusedConvReluAvgPool.from_conv(mods[0], backend, sparse)
                for name, m in zip(names[i + 1:i + 3], mods[1:]):
                    seq._modules[name] = FusedAway(m)
                i += 3
            elif _is_stem(mods):
                pool = mods[2] if len(mods) > 2 and _fusable_pool(mods[2]) else None
                seq._modules[names[i]] = FusedConvReluMaxPool.from_modules(mods[0], pool, backend)
                for name, m in zip(names[i + 1:i + 3], mods[1:2] + [pool] * (pool is not None)):
                    seq._modules[name] = FusedAway(m)
                i += 2 + (pool is not None)
            elif (len(mods) >= 2 and _fusable_pool(mods[0]) and type(mods[1]) is FusedFire
                  and mods[1].pool is None):
                mods[1].pool = _pool_of(mods[0])
                seq._modules[names[i]] = FusedAway(mods[0])
                i += 2
            else:
                i += 1
    for m in model.modules():
        if isinstance(m, FusedFire):
            m.sparse = sparse
    return model


def unfuse_fire_modules(model: nn.Module) -> nn.Module:
    """Replaces, in place, every fused module of ``model`` by the plain modules it
    stands for and returns ``model``: each :class:`FusedFire` by the plain ``Fire`` of
    :meth:`FusedFire.to_fire`, and what ``fuse_network`` fused by the original
    convolutions, ReLUs and pools (same Parameters, same ``state_dict`` keys). The
    route to ONNX, which knows no fire_kernels operator::

        torch.onnx.export(fk.unfuse_fire_modules(copy.deepcopy(model)), (x,), "model.onnx")
    """
    for child in list(model.modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, FusedFire):
                plain = sub.to_fire()
            elif isinstance(sub, FusedAway):
                plain = sub.original
            elif isinstance(sub, (FusedConvReluMaxPool, FusedConvReluAvgPool)):
                plain = _conv_from(nn.Conv2d, sub)
            else:
                continue
            child._modules[attr] = plain
    return model

