"""How the suite's commands end: `python -m core|experiments|analysis|bench` exit with their
main's status, and one whose output is piped into a reader that stops early (`| head`) ends
quietly, as `cat` does, with the status of a process killed by SIGPIPE (128 + 13). Standard
library only: the analysis uses it without torch."""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable, NoReturn


def run_command(main: Callable[[], int]) -> NoReturn:
    """`sys.exit(main())`, a closed standard output included (no BrokenPipeError traceback)."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that flush cannot fail
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 128 + signal.SIGPIPE
    sys.exit(status)
