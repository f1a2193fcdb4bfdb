"""Dispatch of runs through submitit: local subprocesses (default), in-process debug, SLURM arrays."""
