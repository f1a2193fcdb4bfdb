# The user's front door. `make help` lists the targets; README.md says how long each takes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Extra pip arguments, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cu126"
# for a CUDA 12.6 build of the pinned torch on a cluster whose driver predates CUDA 13.
PIP_ARGS ?=
PYTEST_ARGS ?=
# pytest workers for the test targets: every test trains on one thread (tests/conftest.py), so two
# workers keep both cores of a 2-core machine busy without oversubscribing them.
TEST_WORKERS ?= 2
# Experiments: `make table1 PROFILE=paper EXECUTOR=slurm SLURM_PARTITION=gpu`.
PROFILE ?= smoke
# The smoke and mini profiles' runs take seconds to a minute, so they run in this process (inline)
# rather than paying a fresh interpreter's imports (~8 s on 2 cores) per run; the paper profile's
# get their own (local).
EXECUTOR ?= $(if $(filter paper,$(PROFILE)),local,inline)
# Runs trained at once here (inline and local executors). The mini profile's small networks are
# bound by per-operation overhead, not arithmetic, so it runs one single-threaded run per core:
# on 2 cores that trains nearly twice the runs of one two-threaded run (slurm/dispatch.py), and
# every mini run computes with one thread whatever the machine's core count (a CPU run's numbers
# depend on its thread count, which its record keeps: env.threads).
NPROC := $(shell nproc 2>/dev/null || echo 1)
JOBS ?= $(if $(filter mini,$(PROFILE)),$(NPROC),1)
MINI_JOBS = $(if $(filter command line environment,$(origin JOBS)),$(JOBS),$(NPROC))
# The grids the paper's claims read (analysis/claims.py: CLAIM_EXPERIMENTS; Figure 3 reuses them).
# `make claims` runs their ResNet-50 cells on CIFAR-100's recipes (Table 1's column, Tables 5, 6
# and 9, Figure 3's ResNet-50 panel), three seeds each, within 90 minutes on 2 cores;
# `make claims-all` the rest as well.
CLAIM_GRIDS := table1,table5,table6,table9
ALL_CLAIM_GRIDS := table1,table5,table6,table7,table8,table9,table3,table2
SLURM_PARTITION ?=
SLURM_ACCOUNT ?=
SLURM_QOS ?=
SLURM_TIME ?=
SLURM_CPUS ?=
SLURM_MEM_GB ?=
SLURM_CONSTRAINT ?=
SLURM_PARALLELISM ?=
SLURM_EXTRA ?=
ARGS ?=
# `make table1 RERUN=stale`: set aside the runs of another code version (or failed, or all) and run them afresh.
RERUN ?=
SLURM_FLAGS = $(if $(SLURM_PARTITION),--partition $(SLURM_PARTITION)) $(if $(SLURM_ACCOUNT),--account $(SLURM_ACCOUNT)) \
	$(if $(SLURM_QOS),--qos $(SLURM_QOS)) $(if $(SLURM_TIME),--time $(SLURM_TIME)) $(if $(SLURM_CPUS),--cpus $(SLURM_CPUS)) \
	$(if $(SLURM_MEM_GB),--mem-gb $(SLURM_MEM_GB)) $(if $(SLURM_CONSTRAINT),--constraint $(SLURM_CONSTRAINT)) \
	$(if $(SLURM_PARALLELISM),--parallelism $(SLURM_PARALLELISM)) $(foreach flag,$(SLURM_EXTRA),--sbatch $(flag))
# One make target per grid file: experiments/tableN.yaml and figN.yaml (a new table's YAML is its target).
EXPERIMENTS := $(sort $(basename $(notdir $(wildcard experiments/table*.yaml experiments/fig*.yaml))))

.DEFAULT_GOAL := help
# `make tables` etc. render the profile most runs have unless PROFILE is given on the command line.
VIEW_PROFILE = $(if $(filter command line environment,$(origin PROFILE)),--profile $(PROFILE))

.PHONY: help install test test-slow test-all test-slurm demo claims claims-all clean experiments tables figures report bench gpu-check gpu-wheels $(EXPERIMENTS)

help: ## list the targets
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14
	@printf '%-14s%s\n' "table1..10" "run what is missing of a table, then show it (EXECUTOR=inline|local|slurm|debug, PROFILE=smoke|mini|paper, RERUN=failed|stale|all," \
		"" "SLURM_PARTITION=... SLURM_TIME=... for the cluster)" "fig3..9" "the same for a figure (they reuse the tables' runs)"

install: $(STAMP) ## create .venv and install the suite with its pinned dependencies (once)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]' $(PIP_ARGS)
	@touch $(STAMP)

test: install ## run the fast test tier (CPU)
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

test-slow: install ## run the slow tier only (end-to-end runs; CI runs it after make test)
	$(PY) -m pytest -n $(TEST_WORKERS) -m slow $(PYTEST_ARGS)

test-all: install ## run every test, the slow end-to-end ones included
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-slurm: install ## start a one-node SLURM here (installs slurm-wlm and munge if missing), run the SLURM tests, stop it
	bash slurm/cluster/up.sh
	. $${S2H_SLURM_DIR:-/tmp/s2h-slurm}/env.sh && $(PY) -m pytest -m slurm tests/slurm $(PYTEST_ARGS); \
	status=$$?; bash slurm/cluster/down.sh; exit $$status

demo: install ## Table 1's ResNet-50 columns at 15 and 55 % on real images (mini profile: digits), trained here: dense and five methods, seed 0
	$(PY) -m experiments run table1 --profile mini --executor inline --jobs $(MINI_JOBS) --where model.name=resnet50 \
		--where prune.flops_target=0.15,0.55,1.0 --where seed=0 $(ARGS)
	$(PY) -m analysis table 1 --profile mini
	@echo "The rest of Table 1 on real images (the 35 % column, seeds 1 and 2, MobileNetV3, WRN28-10): make table1 PROFILE=mini; the paper's claims decided over three seeds: make claims"

claims: install ## the paper's claims on ResNet-50 (Tables 1, 5, 6, 9, Fig. 3), mini profile, 3 seeds, here (finished runs reused), then each claim's verdict
	$(PY) -m experiments run $(CLAIM_GRIDS) --where model.name=resnet50 --profile mini --executor inline --jobs $(MINI_JOBS) $(if $(RERUN),--rerun $(RERUN)) $(ARGS); \
	status=$$?; $(PY) -m analysis claims --profile mini; exit $$status

claims-all: install ## every claim's grids (also MobileNetV3, WRN28-10, ViT, Swin, Tables 2, 7, 8) on the mini profile, 3 seeds, then the verdicts
	$(PY) -m experiments run $(ALL_CLAIM_GRIDS) --profile mini --executor inline --jobs $(MINI_JOBS) $(if $(RERUN),--rerun $(RERUN)) $(ARGS); \
	status=$$?; $(PY) -m analysis claims --profile mini; exit $$status

experiments: install ## list every experiment with its run count and cost
	$(PY) -m experiments list

$(EXPERIMENTS): install ## tableN / figN: run what is missing (EXECUTOR, PROFILE), then render it
	$(PY) -m experiments run $@ --profile $(PROFILE) --executor $(EXECUTOR) $(if $(filter inline local,$(EXECUTOR)),--jobs $(JOBS)) $(if $(RERUN),--rerun $(RERUN)) $(if $(filter slurm,$(EXECUTOR)),$(SLURM_FLAGS)) $(ARGS)
	$(PY) -m analysis $(if $(filter table%,$@),table $(subst table,,$@),figure $(subst fig,,$@)) --profile $(PROFILE)

tables: install ## write Tables 1-10 (md, csv, tex) from the records there are into results/tables/
	$(PY) -m analysis tables $(VIEW_PROFILE)

figures: install ## draw Figures 3-9 (PNG, PDF) from the records there are into results/figures/
	$(PY) -m analysis figures $(VIEW_PROFILE)

report: install ## write results/report.md and results/report.html: every table and figure, environment, missing cells
	$(PY) -m analysis report $(VIEW_PROFILE)

# What a GPU machine's own PyTorch stack lacks (its image has torch, torchvision, timm, numpy,
# pandas, scipy, PyYAML, tqdm, tensorboard, cloudpickle): pure-Python wheels, carried to it in .whl/.
GPU_WHEELS := torch-pruning submitit omegaconf
# On a GPU machine the suite runs on that machine's python3 (`make gpu-check PY=python3`), not .venv.
GPU_CHECK_NEEDS = $(if $(filter command line environment,$(origin PY)),,install)

gpu-wheels: install ## wheels of the packages a GPU machine lacks, into .whl/ (bench/README.md: GPU check)
	rm -rf .whl && $(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps -c constraints.txt -w .whl $(GPU_WHEELS)
	@ls .whl

gpu-check: $(GPU_CHECK_NEEDS) ## on one CUDA GPU, <= 8 min: every method on CUDA, step time and memory, latency, NCCL, two streams (ARGS=--dry-run: the plan)
	@$(PY) -m bench gpu-check $(ARGS)

bench: install ## benchmarks into results/bench/: each method's training step and memory, slimmed networks' latency, table rendering
	$(PY) -m bench
	$(PY) -m analysis.render_bench

clean: ## remove the venv and what the smoke profile wrote, listing it (paper, mini and custom runs are kept)
	python3 -m core.clean results
	rm -rf $(VENV) *.egg-info
