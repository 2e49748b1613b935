"""The delegates benchmark_model can run a model with on a phone (``mnbench device --delegate``).

Which flags each gets depends on the tool (:func:`device_bench.android_run.benchmark_argv`): LiteRT's
CompiledModel benchmark (``litert/tools/benchmark_litert_model.h``, the ``benchmark_model`` Google publishes
per LiteRT release) runs ``xnnpack`` (its CPU path), ``gpu`` and ``npu``; the classic TFLite tool runs
``cpu``, ``xnnpack``, ``gpu`` and ``nnapi``.
"""

import enum


class Delegate(str, enum.Enum):
    CPU = "cpu"            # the plain CPU kernels, without XNNPACK (classic tool only)
    XNNPACK = "xnnpack"
    GPU = "gpu"            # LiteRT GPU accelerator (--use_gpu)
    NNAPI = "nnapi"        # classic tool only; deprecated from Android 15
    NPU = "npu"            # LiteRT NPU accelerator (--use_npu) with the vendor's dispatch library


DELEGATES = tuple(delegate.value for delegate in Delegate)
ACCELERATORS = (Delegate.GPU.value, Delegate.NPU.value)  # units counted per accelerator in the row
GPU_PRECISIONS = ("auto", "fp16", "fp32")  # --gpu-precision values (benchmark_litert_model.cc)
GPU_BACKENDS = ("auto", "opengl", "webgpu")  # --gpu_backend; auto = the accelerator's default (OpenCL)
NNAPI_DEPRECATED_SDK = 35  # Android 15
