"""``FusedFire``, the drop-in Fire module, and ``fuse_fire_modules``, the model-wide swap."""

from __future__ import annotations

import warnings
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from . import functional as F
from .functional import BACKENDS, Backend, Pool
from .reference import Fire
from .validation import check_fire_input
from .weight_plan import (
    SparseMode,
    WeightPlan,
    effective_weights,
    make_plan,
    note_module_change,
    sources_of,
)

__all__ = [
    "FusedFire",
    "fire_like_modules",
    "fuse_fire_modules",
    "is_fire_like",
]


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


class Planned(nn.Module):
    """A fused module that keeps a weight plan (``fire_kernels.weight_plan``): its
    forward runs the dense op on the weights as computed whenever autograd needs
    gradients or torch.compile traces, and otherwise the plan, made afresh only when
    its weights' sources, or the kind of input, changed. Subclasses say how to run
    dense (``_dense``), how to make a plan (``_make_plan``) and run it (``_run_plan``)."""

    _plan: WeightPlan | None

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if name != "_plan":  # a setting (backend, sparse, pool, training...): programs are stale
            note_module_change()

    def _forward_planned(self, x: Tensor, convs: tuple[nn.Module, ...]) -> Tensor:
        if torch.compiler.is_compiling():
            # Dynamo traces the dense op on the weights as computed (no plan: its
            # cache checks are Python state Dynamo would guard on).
            return self._dense(x)
        sources = sources_of(convs)
        if torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in sources)):
            # Gradients wanted: the dense op, whose autograd needs the weights as
            # computed now (a graph through any parametrization or mask).
            return self._dense(x)
        plan = self._plan
        if plan is None or not (plan.made_from(sources) and plan.serves(x)):
            plan = self._replan(x, sources, plan)
        # No gradient is wanted here: call the operators below the Autograd key, as
        # the autograd of a torch.library op does itself when none is (its Python
        # wrapper cost 5 us of a 10 us call; a forward of SqueezeNet makes nine).
        with torch._C._AutoDispatchBelowAutograd():
            return self._run_plan(x, plan)

    def _replan(self, x: Tensor, sources: list[Tensor], earlier: WeightPlan | None) -> WeightPlan:
        """The plan for ``x``: one made before for its width (``earlier``'s family),
        else a new one, kept where it can be."""
        plan = earlier.for_width(x, sources) if earlier is not None else None
        if plan is None:
            plan = self._make_plan(x, sources)
            plan.join_family(earlier, sources)
            if not plan.cacheable and plan.backend == "cpp":
                warnings.warn(
                    f"{type(self).__name__}: its weights are inference tensors (made under "
                    "torch.inference_mode()), which have no version counter, so nothing about "
                    "them can be cached: they are packed and checked for sparsity again on "
                    "every call (SqueezeNet 1.1 at batch 1 took 1.7x-1.9x the time). Create "
                    "the model, and change its memory format, outside inference_mode.",
                    stacklevel=4,
                )
        if plan.cacheable:
            self._plan = plan
        return plan

    @property
    def weight_plan(self) -> WeightPlan | None:
        """What the last inference forward ran (dense, or which sparse form) and what
        from, or None before the first one (or after its settings changed)."""
        return self._plan

    def __getstate__(self) -> dict:
        # Copies (copy.deepcopy, pickle, torch.save of the module) carry no plan: a
        # copy makes its own from its own weights, and changing it never touches
        # the original's packed weights.
        state = dict(self.__dict__)
        state["_plan"] = None
        return state


def check_sparse_mode(value: SparseMode) -> SparseMode:
    if value not in ("auto", True, False):
        raise ValueError(f"sparse must be 'auto', True or False, got {value!r}")
    return value


def check_backend(value: str) -> str:
    if value not in BACKENDS:
        raise ValueError(f"unknown backend {value!r}; expected one of {', '.join(BACKENDS)}")
    return value


class FusedFire(Planned):
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
            under ``torch.compile``, the dense kernel runs. The choice and the packed
            weights are the module's weight plan (``fire_kernels.weight_plan``):
            derived, cached (not in ``state_dict``) and made afresh whenever a
            weight's version counter moves or ``fire_kernels.refresh_packed_weights()``
            is called; sparse weights are packed per input width, the last four
            widths' plans kept. As it skips
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
        self.pool = None

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        self._backend = check_backend(value)
        self._plan = None

    @property
    def sparse(self) -> SparseMode:
        return self._sparse

    @sparse.setter
    def sparse(self, value: SparseMode) -> None:
        self._sparse = check_sparse_mode(value)
        self._plan = None

    @property
    def pool(self) -> Pool | None:
        """A max pool of the input fused into the squeeze's read of it: ``(kernel,
        stride, ceil_mode)`` of the ``nn.MaxPool2d`` before this Fire, or None.
        ``fuse_network`` sets it where a MaxPool2d feeds a Fire."""
        return self._pool

    @pool.setter
    def pool(self, value: Pool | None) -> None:
        if value is not None:
            kernel, stride, ceil_mode = value
            value = (int(kernel), int(stride), bool(ceil_mode))
        self._pool = value
        self._plan = None

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
        fused.pool = None
        fused.train(fire_module.training)
        return fused

    def forward(self, x: Tensor) -> Tensor:
        check_fire_input(x, "FusedFire", self.inplanes)
        return self._forward_planned(x, self._convs())

    def _convs(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        m = self._modules
        return m["squeeze"], m["expand1x1"], m["expand3x3"]

    def _dense(self, x: Tensor) -> Tensor:
        weights = effective_weights(*self._convs())
        return F.fire(x, *weights, backend=self._backend, pool=self._pool)

    def _make_plan(self, x: Tensor, sources: list[Tensor]) -> WeightPlan:
        return make_plan(self._convs(), self._backend, self._sparse, x, sources, self._pool)

    def _run_plan(self, x: Tensor, plan: WeightPlan) -> Tensor:
        return F.fire_planned(x, plan, self._pool)

    def to_fire(self) -> Fire:
        """A plain torchvision-style ``Fire`` on the SAME ``nn.Conv2d`` children (the
        same Parameters): for exporting to ONNX, or for code that wants stock PyTorch.
        ``FusedFire.from_fire`` goes the other way."""
        fire = Fire.__new__(Fire)
        nn.Module.__init__(fire)
        fire.inplanes = self.inplanes
        fire.squeeze = self.squeeze
        fire.squeeze_activation = nn.ReLU(inplace=True)
        fire.expand1x1 = self.expand1x1
        fire.expand1x1_activation = nn.ReLU(inplace=True)
        fire.expand3x3 = self.expand3x3
        fire.expand3x3_activation = nn.ReLU(inplace=True)
        fire.train(self.training)
        return fire

    def extra_repr(self) -> str:
        pool = "" if self._pool is None else f", pool={self._pool}"
        return (
            f"{self.inplanes}, {self.squeeze.out_channels}, {self.expand1x1.out_channels}, "
            f"{self.expand3x3.out_channels}, backend={self._backend!r}, sparse={self._sparse!r}"
            f"{pool}"
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

