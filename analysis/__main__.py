from core.console import run_command
from analysis.cli import main

run_command(main)
