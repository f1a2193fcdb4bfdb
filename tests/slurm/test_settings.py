"""SLURM settings: defaults < user file < command line, mapped onto submitit's parameters."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from slurm.settings import executor_parameters, load_settings


def test_command_line_beats_the_user_file_which_beats_the_defaults(tmp_path, monkeypatch):
    user = tmp_path / "slurm.yaml"
    user.write_text("partition: gpu\naccount: lab\ntime_min: 600\nextra: {mail-type: FAIL}\n")
    monkeypatch.setenv("S2H_SLURM_CONFIG", str(user))
    settings = load_settings({"partition": "long", "time_min": None, "qos": "high"}, ["exclude=node3"])
    assert (settings.partition, settings.account, settings.time_min, settings.qos) == ("long", "lab", 600, "high")
    assert settings.extra == {"mail-type": "FAIL", "exclude": "node3"} and settings.cpus_per_task == 8
    params = executor_parameters(settings, gpus=4, name="s2h-table4")
    assert params["tasks_per_node"] == params["gpus_per_node"] == 4  # one task per GPU
    assert params["slurm_partition"] == "long" and params["slurm_account"] == "lab" and params["slurm_qos"] == "high"
    assert params["timeout_min"] == 600 and params["slurm_additional_parameters"] == {"mail_type": "FAIL", "exclude": "node3"}


def test_cpu_only_partitions_ask_for_no_gpus(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("S2H_SLURM_CONFIG", raising=False)
    params = executor_parameters(load_settings({"gpus": False}, []), gpus=2, name="x")
    assert "gpus_per_node" not in params and params["tasks_per_node"] == 2


def test_bad_settings_fail_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("S2H_SLURM_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="--sbatch 'exclude' is not of the form flag=value"):
        load_settings({}, ["exclude"])
    (tmp_path / "slurm.yaml").write_text("partiton: gpu\n")
    with pytest.raises(ConfigError, match="partiton"):
        load_settings({}, [])
    (tmp_path / "slurm.yaml").unlink()
    with pytest.raises(ConfigError, match="parallelism must be >= 1"):
        load_settings({"parallelism": 0}, [])
