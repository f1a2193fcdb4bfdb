from core.console import run_command
from experiments.cli import main

run_command(main)
