"""What every pruner in the suite shares: configs, models, data, training engine, run records.

`python -m core run key=value ...` runs one configuration in this process (see `core.cli`).
"""
