"""The array library the exact simulator's state operations run on: NumPy, or torch on any
device (``"torch"``: its CPU; ``"torch:cuda"``: a GPU where one exists).

Every operation on a batch of states (:mod:`.kernels`, the evolution and the adjoint sweep of
:class:`~qmoe_qiskit.simulation.statevector.Program`, an observable applied to a state) goes
through the object :func:`array_backend` returns, so that swapping the library is one call:
:func:`set_array_backend`. What does not touch the state (the gate table, its block and
Kronecker products, the gates' derivatives, the chain rule) stays in NumPy on the host: a few
small arrays per call, moved to the backend before they are applied. States come back to the
host as NumPy arrays, so the primitives' results do not depend on the backend.

The NumPy backend is the default and the one every result in this project is measured with;
the torch backend exists so that the same kernels can run on an accelerator (nothing depends on
one) and is tested on the CPU against NumPy.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["ArrayBackend", "NumpyBackend", "TorchBackend", "array_backend",
           "set_array_backend", "BACKENDS", "HOST"]

BACKENDS = ("numpy", "torch", "torch:DEVICE")


class ArrayBackend:
    """The operations the simulator needs on state arrays, by one array library. Arrays from
    :meth:`asarray` support NumPy-style indexing, slicing, ``reshape``, ``*``, ``+=``, ``.real``
    and ``.conj()``. The conversions are declared here; each backend also defines, with
    NumPy's meaning, ``matmul``, ``einsum``, ``swapaxes``, ``conj``, ``empty_like``,
    ``zeros_like``, ``concatenate``, ``stack``, ``sum``, ``is_complex`` and ``astype``."""

    name = "abstract"

    def asarray(self, array: np.ndarray):
        """A host NumPy array on this backend (a copy where the library needs one)."""
        raise NotImplementedError

    def constant(self, array: np.ndarray):
        """:meth:`asarray` of an array that never changes (a gate's permutation or phases),
        converted once per array object."""
        raise NotImplementedError

    def to_numpy(self, array) -> np.ndarray:
        """Back to a host NumPy array."""
        raise NotImplementedError

    def zeros(self, shape: tuple, dtype) -> object:
        raise NotImplementedError

    def expectations(self, psi, lam) -> np.ndarray:
        """``Re <psi_r | lam_rk>``: ``(rows, K)`` on the host, from states ``(rows, D)`` and
        vectors ``(rows, K, D)`` (of the same or a wider dtype)."""
        raise NotImplementedError


class NumpyBackend(ArrayBackend):
    """NumPy: every conversion is the identity."""

    name = "numpy"
    matmul = staticmethod(np.matmul)
    einsum = staticmethod(np.einsum)
    swapaxes = staticmethod(np.swapaxes)
    conj = staticmethod(np.conj)

    def asarray(self, array):
        return array

    constant = asarray
    to_numpy = asarray

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def expectations(self, psi, lam) -> np.ndarray:
        return np.einsum("rs,rks->rk", psi.conj(), lam).real

    def empty_like(self, array):
        return np.empty_like(array)

    def zeros_like(self, array):
        return np.zeros_like(array)

    def concatenate(self, arrays, axis: int):
        return np.concatenate(arrays, axis=axis)

    def stack(self, arrays, axis: int):
        return np.stack(arrays, axis=axis)

    def sum(self, array, axis: int):
        return array.sum(axis=axis)

    def is_complex(self, array) -> bool:
        return np.iscomplexobj(array)

    def astype(self, array, dtype):
        return array.astype(dtype, copy=False)


class TorchBackend(ArrayBackend):
    """torch tensors on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...)."""

    def __init__(self, device: str = "cpu"):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"array backend torch:{device}: torch sees no CUDA device here; "
                              f"choose one of: numpy, torch (its CPU)")
        self.name = "torch" if self.device.type == "cpu" else f"torch:{device}"
        self._constants: dict[int, tuple] = {}
        self._dtypes = {np.dtype(n): getattr(torch, n) for n in
                        ("complex128", "complex64", "float64", "float32", "int64", "bool")}
        self.matmul, self.einsum = torch.matmul, torch.einsum
        self.swapaxes, self.conj = torch.swapaxes, torch.conj_physical

    def asarray(self, array):
        array = np.asarray(array)
        if not array.flags.writeable or not array.flags.c_contiguous:
            array = np.ascontiguousarray(array).copy()
        return self.torch.from_numpy(array).to(self.device)

    def constant(self, array):
        held = self._constants.get(id(array))
        if held is None or held[0] is not array:
            if len(self._constants) > 4096:
                self._constants.clear()
            held = self._constants[id(array)] = (array, self.asarray(array))
        return held[1]

    def to_numpy(self, array) -> np.ndarray:
        return array.detach().resolve_conj().cpu().numpy()

    def zeros(self, shape, dtype):
        return self.torch.zeros(shape, dtype=self._dtypes[np.dtype(dtype)], device=self.device)

    def expectations(self, psi, lam) -> np.ndarray:
        psi = psi.to(self.torch.promote_types(psi.dtype, lam.dtype))  # einsum wants one dtype
        return self.to_numpy(self.torch.einsum("rs,rks->rk", psi.conj(), lam).real)

    def empty_like(self, array):
        return self.torch.empty_like(array)

    def zeros_like(self, array):
        return self.torch.zeros_like(array)

    def concatenate(self, arrays, axis: int):
        return self.torch.cat(list(arrays), dim=axis)

    def stack(self, arrays, axis: int):
        return self.torch.stack(list(arrays), dim=axis)

    def sum(self, array, axis: int):
        return array.sum(dim=axis)

    def is_complex(self, array) -> bool:
        return array.is_complex()

    def astype(self, array, dtype):
        return array.to(self._dtypes[np.dtype(dtype)])


HOST = NumpyBackend()  # for arrays that are on the host whatever the backend
_BACKEND: list[ArrayBackend] = [HOST]


def array_backend() -> ArrayBackend:
    """The backend the exact simulator's state operations run on now."""
    return _BACKEND[0]


def set_array_backend(name: str | ArrayBackend) -> ArrayBackend:
    """Run the exact simulator's state operations on ``name``: ``"numpy"`` (the default),
    ``"torch"`` (torch on its CPU) or ``"torch:DEVICE"`` (``"torch:cuda"``), or an
    :class:`ArrayBackend` instance. Returns the backend it replaced; a one-line
    :class:`ConfigError` names the valid choices for anything else."""
    previous = _BACKEND[0]
    if isinstance(name, ArrayBackend):
        _BACKEND[0] = name
        return previous
    if name == "numpy":
        _BACKEND[0] = HOST
    elif isinstance(name, str) and (name == "torch" or name.startswith("torch:")):
        device = name.partition(":")[2] or "cpu"
        try:
            _BACKEND[0] = TorchBackend(device)
        except RuntimeError as error:  # torch's own message for a malformed device string
            raise ConfigError(f"array backend {name!r}: {str(error).splitlines()[0]}; choose "
                              f"one of: {', '.join(BACKENDS)}") from None
    else:
        raise ConfigError(f"unknown array backend {name!r}; choose one of: "
                          f"{', '.join(BACKENDS)}")
    return previous
