from core.console import run_command
from bench.cli import main

run_command(main)
