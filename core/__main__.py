from core.console import run_command
from core.cli import main

run_command(main)
