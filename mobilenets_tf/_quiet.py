"""Import TensorFlow and Keras without their start-up notices. Import this module before either.

TensorFlow writes CUDA/oneDNN notices to file descriptor 2 before its logging is configured, so
``TF_CPP_MIN_LOG_LEVEL`` alone does not silence them: descriptor 2 points at a temporary file during the
import, whose content is replayed on stderr if the import fails. (Silencing later native chatter, e.g. the
LiteRT interpreter's, is ``device_bench.quiet``'s job; this package imports no other mnbench package.)
"""

import logging
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable float results from run to run


def _import_quietly() -> None:
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
            import keras  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


if "tensorflow" not in sys.modules:
    _import_quietly()

logging.getLogger("tensorflow").setLevel(logging.ERROR)
logging.getLogger("absl").setLevel(logging.ERROR)
