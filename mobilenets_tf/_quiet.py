"""Keep TensorFlow's start-up logging off the user's terminal. Import this before tensorflow or keras.

TensorFlow writes its CUDA/oneDNN notices straight to file descriptor 2 before its logging is configured, so
``TF_CPP_MIN_LOG_LEVEL`` alone does not silence them: the first import runs with fd 2 pointed at a temporary
file, which is replayed if the import fails.
"""

import logging
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable float results from run to run


def _import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules:
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), fd)
        try:
            import tensorflow  # noqa: F401
            import keras  # noqa: F401
        except BaseException:
            os.dup2(saved, fd)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, fd)
            os.close(saved)


_import_tensorflow_quietly()
logging.getLogger("tensorflow").setLevel(logging.ERROR)
logging.getLogger("absl").setLevel(logging.ERROR)
