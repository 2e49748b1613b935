"""Keep native libraries' chatter (TensorFlow, the LiteRT interpreter) off the user's terminal.

TensorFlow and LiteRT write notices ("Created TensorFlow Lite XNNPACK delegate", CUDA probes, converter
dumps) straight to file descriptors 1 and 2, where Python's logging cannot reach them. ``captured()``
points those descriptors at a temporary file for the duration of a block; if the block fails, what was
captured is replayed on stderr so nothing useful for a bug report is lost.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings


@contextlib.contextmanager
def captured(fds: tuple[int, ...] = (1, 2)):
    """Send the block's output on these descriptors, its print()s and its warnings, to a temp file."""
    try:
        saved = {fd: os.dup(fd) for fd in fds}
    except OSError:          # no real descriptors (embedded interpreter): nothing to silence
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    python_level = io.StringIO()     # print() and warnings from Python code inside the block
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fd in fds:
            os.dup2(sink.fileno(), fd)
        try:
            with contextlib.redirect_stdout(python_level), contextlib.redirect_stderr(python_level):
                yield
        except BaseException:
            _restore(saved)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace") + python_level.getvalue())
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            _restore(saved)


def _restore(saved: dict[int, int]) -> None:
    for fd, copy in list(saved.items()):
        os.dup2(copy, fd)
        os.close(copy)
        del saved[fd]
