"""``FusedFire``, the drop-in Fire module, and ``fuse_fire_modules``, the model-wide swap."""

from __future__ import annotations

import warnings
from operator import is_
from typing import Callable, Iterator, Literal, Union

import torch
from torch import Tensor, nn

from . import sparse as _sparse
from .functional import _FIRE_OP, BACKENDS, Backend, fire, resolve_backend

__all__ = [
    "FusedFire",
    "conv_weight",
    "fire_like_modules",
    "fuse_fire_modules",
    "invalidate_packed_weights",
    "is_fire_like",
]

SparseMode = Union[Literal["auto"], bool]

# Bumped by invalidate_packed_weights(): every cached packing is then stale.
_pack_epoch = 0


def invalidate_packed_weights() -> None:
    """Makes every FusedFire repack its sparse weights at its next forward."""
    global _pack_epoch
    _pack_epoch += 1


def conv_weight(conv: nn.Module, name: str = "weight") -> Tensor | None:
    """The weight (or bias) ``conv.forward`` would use. For a conv pruned with
    ``torch.nn.utils.prune`` that is ``weight_orig * weight_mask``, which its forward
    pre-hook only computes when the conv itself is called (FusedFire never calls it)."""
    p = conv._parameters.get(name)
    if p is not None:
        return p
    orig, mask = conv._parameters.get(name + "_orig"), conv._buffers.get(name + "_mask")
    if orig is not None and mask is not None:
        return orig * mask
    return getattr(conv, name)  # None (no bias), or a parametrization's result


def _is_conv(m: object, k: int, padding: int) -> bool:
    return (
        isinstance(m, nn.Conv2d)
        and m.kernel_size == (k, k)
        and m.stride == (1, 1)
        and m.padding == (padding, padding)
        and m.dilation == (1, 1)
        and m.groups == 1
        and m.padding_mode == "zeros"
    )


def _fire_mismatch(m: nn.Module) -> str | None:
    """Why ``m`` is not a torchvision-style Fire, or None if it is one."""
    sq, e1, e3 = (getattr(m, n, None) for n in ("squeeze", "expand1x1", "expand3x3"))
    if not _is_conv(sq, 1, 0):
        return "its .squeeze is not a 1x1 nn.Conv2d (stride 1, no padding, groups 1)"
    if not _is_conv(e1, 1, 0):
        return "its .expand1x1 is not a 1x1 nn.Conv2d (stride 1, no padding, groups 1)"
    if not _is_conv(e3, 3, 1):
        return "its .expand3x3 is not a 3x3 nn.Conv2d (stride 1, padding 1, groups 1)"
    if not (e1.in_channels == e3.in_channels == sq.out_channels):
        return (
            f"the expands take {e1.in_channels} and {e3.in_channels} channels but the "
            f"squeeze gives {sq.out_channels}"
        )
    for name in ("squeeze_activation", "expand1x1_activation", "expand3x3_activation"):
        act = getattr(m, name, None)
        if act is not None and not isinstance(act, nn.ReLU):
            return f"its .{name} is {type(act).__name__}, not ReLU"
    return None


def fire_like_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(qualified name, module) of every Fire-shaped module of ``model``, itself included."""
    for name, m in model.named_modules():
        if is_fire_like(m):
            yield name, m


def is_fire_like(m: nn.Module) -> bool:
    """True if ``m`` has torchvision's Fire structure: Conv2d children ``squeeze`` (1x1),
    ``expand1x1`` (1x1) and ``expand3x3`` (3x3, padding 1) of matching channels, and
    ReLU activations if it names them (``squeeze_activation``, ...)."""
    return _fire_mismatch(m) is None


class FusedFire(nn.Module):
    """SqueezeNet's Fire module computed by one fused kernel.

    Same constructor, child modules (``squeeze``, ``expand1x1``, ``expand3x3``: plain
    ``nn.Conv2d``) and ``state_dict`` keys as torchvision's ``Fire``, and the same
    function: ``cat([relu(expand1x1(s)), relu(expand3x3(s))], 1)`` with
    ``s = relu(squeeze(x))``.

    Args:
        inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes: as torchvision's Fire.
        backend: ``"auto"`` (C++ kernel on CPU, Triton on CUDA, reference otherwise),
            ``"cpp"``, ``"triton"`` or ``"torch"`` (the plain PyTorch reference).
            Can be changed at any time through the ``backend`` attribute.
        sparse: ``"auto"`` runs the sparse C++ kernel when the weights are sparse
            enough for it to beat the dense one (measured crossovers in
            ``fire_kernels.sparse``); ``True`` runs it whatever the density, ``False``
            never. Only inference uses it: whenever autograd needs gradients, and
            under ``torch.compile``, the dense kernel runs. The packed weights are
            derived, cached (not in ``state_dict``) and rebuilt whenever a weight's
            version counter moves, the input width changes, or
            ``fire_kernels.refresh_packed_weights()`` is called. As it skips
            zero weights, a NaN or Inf in the input reaches only the outputs
            it has a nonzero weight path to (the dense computation spreads it
            through ``0 * NaN``).
    """

    def __init__(
        self,
        inplanes: int,
        squeeze_planes: int,
        expand1x1_planes: int,
        expand3x3_planes: int,
        *,
        backend: Backend = "auto",
        sparse: SparseMode = "auto",
    ) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.backend = backend
        self.sparse = sparse

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}; expected one of {', '.join(BACKENDS)}")
        self._backend = value
        self._fast: tuple | None = None

    @property
    def sparse(self) -> SparseMode:
        return self._sparse

    @sparse.setter
    def sparse(self, value: SparseMode) -> None:
        if value not in ("auto", True, False):
            raise ValueError(f"sparse must be 'auto', True or False, got {value!r}")
        self._sparse = value
        self._packed: tuple | None = None  # (key, tensors, packed weights or None)
        self._fast = None

    @classmethod
    def from_fire(
        cls, fire_module: nn.Module, *, backend: Backend = "auto", sparse: SparseMode = "auto"
    ) -> FusedFire:
        """A FusedFire computing what ``fire_module`` computes, built on the SAME
        ``nn.Conv2d`` children (hence the same Parameter objects: optimizers that hold
        them keep working, and edits through either module are seen by both).

        Raises:
            TypeError: ``fire_module`` does not have torchvision's Fire structure.
        """
        why = _fire_mismatch(fire_module)
        if why is not None:
            raise TypeError(f"cannot fuse {type(fire_module).__name__}: {why}")
        fused = cls.__new__(cls)
        nn.Module.__init__(fused)
        fused.inplanes = fire_module.squeeze.in_channels
        fused.squeeze = fire_module.squeeze
        fused.expand1x1 = fire_module.expand1x1
        fused.expand3x3 = fire_module.expand3x3
        fused.backend = backend
        fused.sparse = sparse
        fused.train(fire_module.training)
        return fused

    def forward(self, x: Tensor) -> Tensor:
        # The common case first, in as few Python steps as possible: right after a
        # kernel has run, the interpreter's caches are cold and each step costs
        # about a microsecond (the general path below cost ~70 us a call, a tenth
        # of a small layer). It holds while the last call took the dense C++
        # kernel and the three weights are the same tensors at the same versions
        # (so the dense-or-sparse choice still stands). torch.compile traces the
        # general path.
        fast = self._fast
        if (
            fast is not None and not torch.compiler.is_compiling() and x.is_cpu
            and x.dtype is torch.float32 and x.dim() == 4 and x.shape[1] == self.inplanes
            and fast[6] == _pack_epoch
        ):
            m = self._modules
            ps, p1, p3 = m["squeeze"]._parameters, m["expand1x1"]._parameters, m["expand3x3"]._parameters
            ws, we1, we3 = ps.get("weight"), p1.get("weight"), p3.get("weight")
            if (
                ws is fast[0] and we1 is fast[1] and we3 is fast[2] and ws._version == fast[3]
                and we1._version == fast[4] and we3._version == fast[5]
            ):
                return _FIRE_OP(x, ws, ps.get("bias"), we1, p1.get("bias"), we3, p3.get("bias"))
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        """Every case: checks, backend, dense or sparse; records when the fast path
        of ``forward`` may take the next call."""
        self._fast = None
        if x.dim() == 4 and x.shape[1] != self.inplanes:
            raise ValueError(
                f"FusedFire expected {self.inplanes} input channels, got {x.shape[1]}"
            )
        modules = self._modules
        sq, e1, e3 = modules["squeeze"], modules["expand1x1"], modules["expand3x3"]
        convs = (sq, e1, e3)
        ws, we1, we3 = conv_weight(sq), conv_weight(e1), conv_weight(e3)
        bs, be1, be3 = conv_weight(sq, "bias"), conv_weight(e1, "bias"), conv_weight(e3, "bias")
        path = resolve_backend(self._backend, x) if x.dim() == 4 else None
        # Not while torch.compile traces: Dynamo cannot trace is_inference().
        if path == "cpp" and not torch.compiler.is_compiling() and ws.is_inference():
            warnings.warn(
                "FusedFire: its weights are inference tensors (made under "
                "torch.inference_mode()), which have no version counter, so nothing about "
                "them can be cached: they are packed and checked for sparsity again on "
                "every call (SqueezeNet 1.1 at batch 1 took 1.7x-1.9x the time). Create "
                "the model, and change its memory format, outside inference_mode.",
                stacklevel=2,
            )
        # Dense whatever the grad mode: the choice the fast path may repeat.
        dense_chosen = self._sparse is False
        if path in ("cpp", "triton") and self._sparse is not False and self._inference(x, convs):
            packed = self._packed_weights(path, x, convs, ws, we1, we3)
            dense_chosen = packed is None
            if isinstance(packed, _sparse.SparsePacked):
                return torch.ops.fire_kernels.fire_sparse(
                    x, packed.squeeze_values, packed.squeeze_index, bs, packed.expand_values,
                    packed.expand_index, be1, be3, ws.shape[0], we1.shape[0], we3.shape[0],
                    packed.block, packed.width,
                )
            if isinstance(packed, _sparse.BlockList):
                args = (x, ws, bs, we1, be1, we3, be3, packed.blocks, packed.counts, packed.block)
                if x.device.type == "cpu":  # Triton's interpreter: the launcher directly
                    return packed.launcher(*args)
                return torch.ops.fire_kernels.fire_blocksparse(*args)
        out = fire(x, ws, bs, we1, be1, we3, be3, backend=self._backend)
        if path == "cpp" and dense_chosen and all(  # plain weights, not computed (pruning masks)
            c._parameters.get("weight") is w and not w.is_inference()
            for c, w in zip(convs, (ws, we1, we3))
        ):
            self._fast = (ws, we1, we3, ws._version, we1._version, we3._version, _pack_epoch)
        return out

    @staticmethod
    def _inference(x: Tensor, convs) -> bool:
        """Whether this forward may run a sparse kernel: no gradients wanted (they
        have no backward of their own here), not inside torch.compile."""
        if torch.compiler.is_compiling():
            return False
        return not (torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for c in convs for p in c.parameters())
        ))

    def _packed_weights(self, path: str, x: Tensor, convs, ws, we1, we3):
        """The sparse form of the weights for this backend and input width
        (SparsePacked for C++, BlockList for Triton), or None where the dense
        kernel is faster; cached until a weight changes."""
        # The exact tensors (not their ids, which a new tensor can reuse) and their
        # version counters, which every in-place change bumps.
        # (A list comprehension and map: this runs on every inference forward,
        # and generator expressions cost microseconds here.)
        tensors = [
            t for c in convs for d in (c._parameters, c._buffers) for t in d.values()
            if t is not None  # bias=False convs keep a None bias
        ]
        width = x.shape[3]
        if any(map(Tensor.is_inference, tensors)):
            # Made under torch.inference_mode: no version counter says when they
            # change, so nothing is cached.
            self._packed = None
            return self._pack(path, ws, we1, we3, width)
        key = (_pack_epoch, path, x.device, width, self._sparse, [t._version for t in tensors])
        cached = self._packed
        if cached is not None:
            cached_key, cached_tensors, packed = cached
            if cached_key == key and all(map(is_, cached_tensors, tensors)):
                return packed
        packed = self._pack(path, ws, we1, we3, width)
        self._packed = (key, tensors, packed)
        return packed

    def _pack(self, path: str, ws: Tensor, we1: Tensor, we3: Tensor, width: int):
        """What :meth:`_packed_weights` caches, computed afresh."""
        force = self._sparse is True
        if path == "cpp":
            block = _sparse.choose_block(ws, we1, we3) if force else _sparse.sparse_pays(ws, we1, we3)
            return None if block is None else _sparse.pack_sparse(ws, we1, we3, block, width)
        return _sparse.gpu_block_list(we3, force)

    def extra_repr(self) -> str:
        return (
            f"{self.inplanes}, {self.squeeze.out_channels}, {self.expand1x1.out_channels}, "
            f"{self.expand3x3.out_channels}, backend={self._backend!r}, sparse={self._sparse!r}"
        )


def fuse_fire_modules(
    model: nn.Module,
    *,
    backend: Backend = "auto",
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
) -> nn.Module:
    """Replaces, in place, every Fire-shaped submodule of ``model`` (see
    :func:`is_fire_like`; any class, not only torchvision's) by a :class:`FusedFire`
    sharing its parameters, and returns ``model``.

    Args:
        model: the model to modify (a Fire itself is not replaced: wrap it instead,
            or use :meth:`FusedFire.from_fire`).
        backend: backend of the new modules.
        filter_fn: ``filter_fn(module, qualified_name)`` returning False keeps that
            module as it is.
    """
    for name, child in list(model.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, FusedFire) or not is_fire_like(sub):
                continue
            qualified = f"{name}.{attr}" if name else attr
            if filter_fn is not None and not filter_fn(sub, qualified):
                continue
            setattr(child, attr, FusedFire.from_fire(sub, backend=backend))
    return model
