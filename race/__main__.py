"""``python -m race``: the CLI, with Ctrl-C at any moment one line and exit 130."""

import signal
import sys

_interrupted = False


def _note_interrupt(signum: int, frame: object) -> None:
    global _interrupted
    _interrupted = True


def _interrupted_exit() -> int:
    print("interrupted", file=sys.stderr)
    return 130


# While the libraries every command needs load, a Ctrl-C is only noted: raised inside a
# compiled extension's initialisation (pydantic_core's pyo3 code), KeyboardInterrupt
# becomes a Rust panic that prints its own report. It takes effect once they are loaded.
signal.signal(signal.SIGINT, _note_interrupt)
try:
    import pydantic  # noqa: F401
    import sqlalchemy  # noqa: F401

    from race.cli import main
finally:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if _interrupted:
    sys.exit(_interrupted_exit())
try:
    code = main()
except KeyboardInterrupt:  # Ctrl-C during a command's own imports: one line, no traceback
    code = _interrupted_exit()
sys.exit(code)
