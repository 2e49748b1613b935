"""Import TensorFlow and Keras without their start-up notices. Import this module before either.

TensorFlow writes CUDA/oneDNN notices to file descriptor 2 before its logging is configured, so
``TF_CPP_MIN_LOG_LEVEL`` alone does not silence them.
"""

import logging
import os
import sys

from mnbench.quiet import captured

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable float results from run to run

if "tensorflow" not in sys.modules:
    with captured((2,)):
        import tensorflow  # noqa: F401
        import keras  # noqa: F401

logging.getLogger("tensorflow").setLevel(logging.ERROR)
logging.getLogger("absl").setLevel(logging.ERROR)
