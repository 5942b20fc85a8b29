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
computes nothing and remembers the module it stands for. Every ``nn.Sequential``
that holds a fused module becomes a :class:`FusedSequential`, whose inference
forward runs its layers in one C++ call. Parameters, their objects and
``state_dict`` keys stay as they were; ``unfuse_fire_modules`` restores the plain
modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _nn_module

from . import _extension
from . import functional as F
from .functional import Backend, Pool
from .module import FusedFire, Planned, check_backend, check_sparse_mode, fuse_fire_modules
from .sparse import SparsePacked
from .validation import check_fire_input
from .weight_plan import (
    SparseMode,
    WeightPlan,
    conv_weight,
    generations,
    keep_newest,
    make_head_plan,
    note_module_change,
    sources_of,
)

__all__ = [
    "FusedAway",
    "FusedConvReluAvgPool",
    "FusedConvReluMaxPool",
    "FusedSequential",
    "fuse_network",
    "unfuse_fire_modules",
]

# A network program runs its layers without asking their modules, so any change to
# what a module holds (a Parameter, buffer or submodule set anywhere) makes the
# programs stale. Registering these costs nothing at inference: nn.Module calls
# them only when something is registered.
_nn_module.register_module_parameter_registration_hook(note_module_change)
_nn_module.register_module_buffer_registration_hook(note_module_change)
_nn_module.register_module_module_registration_hook(note_module_change)

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
        self.train(original.training)

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

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        note_module_change()  # a setting (stride, pool, backend...): programs are stale

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


@dataclass(eq=False)
class _Program:
    """What a FusedSequential's inference forward runs: ``native``, the C++
    ``NetworkProgram`` of its children (None: they cannot run as one), while they are
    ``children`` and nothing changed since ``made_under`` (``weight_plan.generations``)."""

    children: tuple[nn.Module, ...]
    made_under: tuple[int, int]
    native: Any
    #: (input channels, width) -> the program for such inputs, made under the same
    #: children and generations (this one included; shared by all of them).
    family: dict[tuple[int, int], _Program] = field(default_factory=dict)


def _called_plainly(m: nn.Module) -> bool:
    """Whether calling ``m`` is only its inference forward (no hooks, not training),
    which a network program can stand in for."""
    return not (m.training or m._forward_hooks or m._forward_pre_hooks)


#: A network program step: (kind, tensors, ints, floats), the arguments of the kind's
#: C++ operator after the input (``csrc/network_program.h``).
ProgramStep = tuple[str, list, list, list]


def _program_step(m: nn.Module, x: Tensor) -> tuple[list[ProgramStep], list[Tensor]] | None:
    """What child ``m`` does to its input ``x`` in a network program: its steps (none
    for the identity) and the tensors their arguments were computed from; None where
    ``m`` cannot be a step (another module, another backend, a plan that cannot be
    kept). ``m`` has just run on ``x``, so its plan is the one for ``x``. A module of
    another kind says itself, by a method ``_program_steps(x)`` answering the same (the
    quantized modules, ``fire_kernels.quantized``)."""
    if type(m) in (FusedAway, nn.Dropout, nn.Identity):
        return [], []
    steps_of = getattr(m, "_program_steps", None)
    if steps_of is not None:
        return steps_of(x)
    if type(m) is FusedConvReluMaxPool:
        if F.resolve_backend(m.backend, x) != "cpp":
            return None
        ints = [m.stride[0], m.padding[0], *m.pool]
        return [("stem", [conv_weight(m), conv_weight(m, "bias")], ints, [])], sources_of((m,))
    plan = m.__dict__.get("_plan") if isinstance(m, (FusedFire, FusedConvReluAvgPool)) else None
    if plan is None or plan.backend != "cpp" or not plan.cacheable:
        return None
    form = plan.sparse
    if type(m) is FusedConvReluAvgPool:
        if form is None:
            return [("head", list(plan.weights), [], [])], plan.sources
        return ([("head_sparse", [form.values, form.index, plan.weights[1]],
                  [form.out_channels, form.block], [])], plan.sources)
    pool = list(m.pool) if m.pool is not None else []
    if form is None:
        return [("fire", list(plan.weights), pool, [])], plan.sources
    if isinstance(form, SparsePacked):
        w = plan.weights
        tensors = [form.squeeze_values, form.squeeze_index, w.squeeze_bias, form.expand_values,
                   form.expand_index, w.expand1x1_bias, w.expand3x3_bias]
        ints = [form.squeeze_channels, form.expand1x1_channels, form.expand3x3_channels,
                form.block, form.width]
        return [("fire_sparse", tensors, ints + pool, [])], plan.sources
    return None


class FusedSequential(nn.Sequential):
    """An ``nn.Sequential`` holding fused modules, as ``fuse_network`` leaves it (the
    same children and ``state_dict`` keys). Its inference forward on the CPU (no
    gradient wanted, not traced by torch.compile) runs its layers in one C++ call, a
    network program (``fire_kernels._C.NetworkProgram``): each layer's kernel in turn
    (float32, or int8 for the modules of ``quantize_network``),
    the images of a batch on threads of their own (so that an image's activations stay
    in its core's caches between layers), with no Python, dispatch or module machinery
    between them, which otherwise cost a SqueezeNet at batch 1 several percent of its
    time (and more after the machine idled, when all that Python is cold in the
    caches). The program is made at the first such forward from the children's weight
    plans and made afresh whenever it would not compute what the children would: their
    weights (or the tensors they are computed from) changed, a parameter, buffer or
    submodule was set anywhere, a fused module's setting changed, or
    ``refresh_packed_weights()`` was called. Its children's sparse weights are packed
    for one input width, so a program is made per input shape (channels, width), the
    last ``MAX_WIDTHS`` kept. A child in training mode, with hooks, or one the program
    cannot run (another module type, another backend) makes the forward run child by
    child, as ``nn.Sequential`` does."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return super().forward(x)
        program = self.__dict__.get("_program")
        if program is not None and self._program_holds(program):
            if program.native is None:
                return super().forward(x)
            out = program.native.run(x)
            if out is not None:
                return out
            # Another width (or channel count): a program made for it before?
            other = program.family.get(x.shape[1:4:2]) if x.dim() == 4 else None
            if other is not None and other is not program:
                out = other.native.run(x)
                if out is not None:
                    self.__dict__["_program"] = other
                    return out
        return self._forward_and_make_program(x)

    def _program_holds(self, program: _Program) -> bool:
        if program.made_under != generations() or (
            _nn_module._global_forward_hooks or _nn_module._global_forward_pre_hooks
        ):
            return False
        children = self._modules
        if len(children) != len(program.children):
            return False
        return all(m is kept and _called_plainly(m)
                   for m, kept in zip(children.values(), program.children))

    def _forward_and_make_program(self, x: Tensor) -> Tensor:
        """The forward child by child, making the program on the way (for an input the
        C++ kernels can run: another kind, a CUDA or float64 one, drops the program and
        leaves the next CPU float32 input, or uint8 one of a quantized network, to make
        one)."""
        if not (_extension.C is not None and x.device.type == "cpu"
                and x.dtype in (torch.float32, torch.uint8) and x.dim() == 4):
            self.__dict__.pop("_program", None)
            return super().forward(x)
        children = tuple(self._modules.values())
        steps: list[tuple] | None = []
        sources: list[Tensor] = []
        h = x
        for m in children:
            out = m(h)
            if steps is not None:
                step = _program_step(m, h) if _called_plainly(m) else None
                if step is None:
                    steps = None
                else:
                    steps += step[0]
                    sources += step[1]
            h = out
        native = None
        if steps:
            native = _extension.C.NetworkProgram(steps, sources, x.shape[1], x.shape[3],
                                                 x.dtype)
        program = _Program(children, generations(), native)
        if native is not None:
            # Kept beside the programs for other input shapes made under the same
            # children and generations (the last MAX_WIDTHS shapes): each holds its
            # children's weights packed for its width.
            earlier = self.__dict__.get("_program")
            if (earlier is not None and earlier.native is not None
                    and earlier.children == children and earlier.made_under == program.made_under):
                program.family = earlier.family
            keep_newest(program.family, (x.shape[1], x.shape[3]), program)
        self.__dict__["_program"] = program
        return h

    def __getstate__(self) -> dict:
        # Copies make their own program from their own weights.
        state = dict(self.__dict__)
        state.pop("_program", None)
        return state


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


# What makes an nn.Sequential a FusedSequential.
_FUSED = (FusedFire, FusedConvReluMaxPool, FusedConvReluAvgPool)


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
        if type(m) is nn.Sequential and any(isinstance(c, _FUSED) for c in m.children()):
            m.__class__ = FusedSequential
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
    for m in model.modules():
        if type(m) is FusedSequential:
            m.__dict__.pop("_program", None)
            m.__class__ = nn.Sequential
    return model

