"""The few CUDA driver calls LiveFX makes, on cuda-python (``cuda.bindings.driver``).

Imported only where a GPU path is chosen. Every call's status is checked; a failure is a
``BackendError`` naming the call and the driver's error name.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from engine.errors import BackendError

try:
    from cuda.bindings import driver as cu
except ImportError as exc:  # the gpu extra is not installed
    raise BackendError(f"cuda-python is not installed (pip install 'livefx[gpu]'): {exc}") from exc


def check(result: Any, call: str) -> Any:
    """cuda-python returns (status, value...) tuples: raise on a bad status, return the value."""
    status, *values = result if isinstance(result, tuple) else (result,)
    if status != cu.CUresult.CUDA_SUCCESS:
        _, name = cu.cuGetErrorName(status)
        raise BackendError(f"{call} failed: {name.decode() if name else status}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class Device:
    """Device ``ordinal``'s primary context, made current on this thread."""

    def __init__(self, ordinal: int = 0) -> None:
        try:
            check(cu.cuInit(0), "cuInit")
        except RuntimeError as exc:  # cuda-python's own: no driver library on this machine
            raise BackendError(f"no NVIDIA driver: {exc}") from exc
        count = check(cu.cuDeviceGetCount(), "cuDeviceGetCount")
        if ordinal >= count:
            raise BackendError(f"no CUDA device {ordinal} ({count} present)")
        self.handle = check(cu.cuDeviceGet(ordinal), "cuDeviceGet")
        self.context = check(cu.cuDevicePrimaryCtxRetain(self.handle), "cuDevicePrimaryCtxRetain")
        self.make_current()
        self.name = check(cu.cuDeviceGetName(256, self.handle), "cuDeviceGetName")
        self.name = self.name.split(b"\0", 1)[0].decode()
        major = check(
            cu.cuDeviceGetAttribute(
                cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.handle
            ),
            "cuDeviceGetAttribute",
        )
        minor = check(
            cu.cuDeviceGetAttribute(
                cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.handle
            ),
            "cuDeviceGetAttribute",
        )
        self.compute_capability = (int(major), int(minor))

    def make_current(self) -> None:
        check(cu.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")


class Stream:
    def __init__(self) -> None:
        self.handle = check(
            cu.cuStreamCreate(cu.CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate"
        )

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        check(cu.cuStreamSynchronize(self.handle), "cuStreamSynchronize")

    def close(self) -> None:
        if self.handle is not None:
            check(cu.cuStreamDestroy(self.handle), "cuStreamDestroy")
            self.handle = None


class DeviceBuffer:
    """``nbytes`` of device memory, allocated once."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.handle = check(cu.cuMemAlloc(max(1, nbytes)), "cuMemAlloc")

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def close(self) -> None:
        if self.handle is not None:
            check(cu.cuMemFree(self.handle), "cuMemFree")
            self.handle = None


class PinnedArray:
    """A page-locked host array (so copies run at PCIe speed and asynchronously)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any] | type) -> None:
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dt.itemsize
        self.ptr = int(check(cu.cuMemHostAlloc(max(1, nbytes), 0), "cuMemHostAlloc"))
        raw = (ctypes.c_byte * max(1, nbytes)).from_address(self.ptr)
        self.array: np.ndarray = np.frombuffer(
            memoryview(raw), dtype=dt, count=int(np.prod(shape))
        ).reshape(shape)

    def close(self) -> None:
        if self.ptr:
            check(cu.cuMemFreeHost(self.ptr), "cuMemFreeHost")
            self.ptr = 0


def copy_to_device(dst: DeviceBuffer, src: PinnedArray, stream: Stream) -> None:
    check(
        cu.cuMemcpyHtoDAsync(dst.handle, src.ptr, src.array.nbytes, stream.handle),
        "cuMemcpyHtoDAsync",
    )


def copy_to_host(dst: PinnedArray, src: DeviceBuffer, stream: Stream) -> None:
    check(
        cu.cuMemcpyDtoHAsync(dst.ptr, src.handle, dst.array.nbytes, stream.handle),
        "cuMemcpyDtoHAsync",
    )
