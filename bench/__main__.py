import sys

from core.console import run_command

if sys.argv[1:2] == ["gpu-check"]:  # the prepared GPU check: python -m bench gpu-check [...]
    from bench.gpu_check import main

    run_command(lambda: main(sys.argv[2:]))
else:
    from bench.cli import main

    run_command(main)
