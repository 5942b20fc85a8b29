"""``FusedFire``, the drop-in Fire module, and ``fuse_fire_modules``, the model-wide swap."""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from .functional import BACKENDS, Backend, fire

__all__ = ["FusedFire", "fuse_fire_modules", "is_fire_like"]


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
    """

    def __init__(
        self,
        inplanes: int,
        squeeze_planes: int,
        expand1x1_planes: int,
        expand3x3_planes: int,
        *,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.backend = backend

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}; expected one of {', '.join(BACKENDS)}")
        self._backend = value

    @classmethod
    def from_fire(cls, fire_module: nn.Module, *, backend: Backend = "auto") -> FusedFire:
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
        fused.train(fire_module.training)
        return fused

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4 and x.shape[1] != self.inplanes:
            raise ValueError(
                f"FusedFire expected {self.inplanes} input channels, got {x.shape[1]}"
            )
        # Straight from the dicts: nn.Module.__getattr__ would cost ~1.5 us per
        # lookup, a few percent of a small Fire's forward.
        modules = self._modules
        sq = modules["squeeze"]._parameters
        e1 = modules["expand1x1"]._parameters
        e3 = modules["expand3x3"]._parameters
        return fire(
            x, sq["weight"], sq["bias"], e1["weight"], e1["bias"], e3["weight"], e3["bias"],
            backend=self._backend,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.inplanes}, {self.squeeze.out_channels}, {self.expand1x1.out_channels}, "
            f"{self.expand3x3.out_channels}, backend={self._backend!r}"
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
