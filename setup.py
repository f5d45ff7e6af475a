"""Build of the one compiled part of the cpu backend; everything else is in pyproject.toml.

``engine.ops._fused`` (kernels/cpu_fused.cpp) holds the cpu backend's fused loops. It is
optional: where it cannot be compiled the install goes on, and the cpu backend uses OpenCV and
NumPy passes instead (``engine.ops.fused.REASON`` says which, and why).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "msvc":
            flags = ["/O2", "/std:c++17"]
        else:
            # Python's own flags carry -fwrapv, which stops GCC vectorising the row loops
            # (their int indices might wrap): 3-4× slower box means.
            flags = ["-O3", "-std=c++17", "-fno-wrapv"]
        for ext in self.extensions:
            ext.extra_compile_args = flags
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "engine.ops._fused",
            sources=["kernels/cpu_fused.cpp"],
            depends=["kernels/pixel.cuh"],  # the per-element math shared with the CUDA kernels
            language="c++",
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
