"""The delegates benchmark_model can run a model with on a phone (``mnbench device --delegate``).

``gpu`` and ``npu`` use the flags of LiteRT's CompiledModel benchmark
(``litert/tools/benchmark_litert_model.h``, the ``benchmark_model`` Google publishes per LiteRT release);
``cpu``, ``xnnpack`` and ``nnapi`` use the classic TFLite tool's flags (``--use_xnnpack``, ``--use_nnapi``).
"""

import enum


class Delegate(str, enum.Enum):
    CPU = "cpu"            # the plain CPU kernels, without XNNPACK
    XNNPACK = "xnnpack"
    GPU = "gpu"            # LiteRT GPU accelerator (--use_gpu)
    NNAPI = "nnapi"        # deprecated from Android 15
    NPU = "npu"            # LiteRT NPU accelerator (--use_npu) with the vendor's dispatch library


DELEGATES = tuple(delegate.value for delegate in Delegate)
ACCELERATORS = (Delegate.GPU.value, Delegate.NPU.value)  # run with the CompiledModel tool's flags
GPU_PRECISIONS = ("auto", "fp16", "fp32")  # --gpu-precision values (benchmark_litert_model.cc)
GPU_BACKENDS = ("auto", "opengl", "webgpu")  # --gpu_backend; auto = the accelerator's default (OpenCL)
NNAPI_DEPRECATED_SDK = 35  # Android 15
