# The project's commands. `make run` installs and runs the whole pipeline on the embedded
# demo; `make test` runs the tests. The other targets are the seeds' variant lifecycle;
# their optional variables (TU OW LT PW REPLAY_START REPLAY_END, RUNTIME_HOST RUNTIME_PORT
# BATCH_SIZE LOG_CSV_COMPRESSION BASELINE, FORCE=1 for publish7) carry prefixes where a shell
# variable could leak in.
# `make setup DVC_REMOTE_URL=<url>` points this clone's DVC remote elsewhere (README).
VENV   ?= .venv
PY     := $(VENV)/bin/python
# DVC stages call `python`: make it the project's interpreter.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

LIFECYCLE := $(PY) -m lifecycle

.PHONY: setup deps run test bench \
        import6 variant6 script6-run nb6-run check6 publish6 remove6 clean6 \
        variant7 script7-run nb7-run check7 publish7 remove7 clean7 compare7

# The remote `storage` (.dvc/config) is a folder under ~/.cache shared by every clone on
# this machine; DVC_REMOTE_URL (a folder, s3://, gs://, ssh://...) overrides it for this
# clone only, in the git-ignored .dvc/config.local.
setup: $(VENV)/.installed
	$(if $(DVC_REMOTE_URL),$(PY) -m dvc remote modify --local storage url '$(DVC_REMOTE_URL)')
	@command -v chromium >/dev/null 2>&1 || echo "note: the report's browser tests need Chromium" \
	    "(Debian/Ubuntu: sudo apt-get install -y chromium); without it they are skipped, saying why"

# The venv: the requirement files (requirements.txt includes requirements-runtime.txt;
# requirements-mlserver.txt: README, "Serving on MLServer"), then the notebooks' kernel
# (their metadata names it f06-f07): this venv's python, for Jupyter and for papermill
# (`make nb6-run`, `nb7-run`).
$(VENV)/.installed: requirements.txt requirements-runtime.txt requirements-mlserver.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-mlserver.txt -r requirements-dev.txt
	$(PY) -m ipykernel install --sys-prefix --name f06-f07 --display-name "Python (F06/F07 project .venv)"
	touch $@

# dvc_deps.yaml: the per-variant dependency lists dvc.yaml reads, generated from params.yaml
# (a variant added or edited by hand is picked up before the run).
deps: setup
	$(LIFECYCLE) deps

run: deps
	dvc repro

# Two workers (pytest-xdist), a test module each at a time: tests/conftest.py says why and in
# which order.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder

bench: setup
	$(PY) -m bench.bench_runtime
	$(PY) -m bench.bench_serving
	$(PY) -m bench.bench_engines

# ---------------------------------------------------------------- F06 lifecycle
variant6: setup
	$(LIFECYCLE) variant6 --variant "$(VARIANT)" --parents "$(PARENTS_F05)" --models '$(MODELS)' \
	    --tu "$(TU)" --ow "$(OW)" --lt "$(LT)" --pw "$(PW)" --start "$(REPLAY_START)" --end "$(REPLAY_END)"
script6-run: setup
	$(LIFECYCLE) run6 --variant "$(VARIANT)"
nb6-run: setup
	$(LIFECYCLE) nb6 --variant "$(VARIANT)"
check6: setup
	$(LIFECYCLE) check6 --variant "$(VARIANT)"
publish6: setup
	$(LIFECYCLE) publish6 --variant "$(VARIANT)"
remove6: setup
	$(LIFECYCLE) remove6 --variant "$(VARIANT)"
clean6: setup
	$(LIFECYCLE) clean6

# ---------------------------------------------------------------- upstream import
# `dvc import` of the F02-F05 folders the F05 variants PARENTS_F05 derive from, out of the
# upstream's git + DVC repository UPSTREAM_REPO (path or git URL) at UPSTREAM_REV (optional).
import6: setup
	$(LIFECYCLE) import6 --repo "$(UPSTREAM_REPO)" --rev "$(UPSTREAM_REV)" --parents "$(PARENTS_F05)"

# ---------------------------------------------------------------- F07 lifecycle
variant7: setup
	$(LIFECYCLE) variant7 --variant "$(VARIANT)" --parent "$(PARENT)" --host "$(RUNTIME_HOST)" --port "$(RUNTIME_PORT)" \
	    --batch-size "$(BATCH_SIZE)" --log-csv-compression "$(LOG_CSV_COMPRESSION)" --baseline "$(BASELINE)"
script7-run: setup
	$(LIFECYCLE) run7 --variant "$(VARIANT)"
nb7-run: setup
	$(LIFECYCLE) nb7 --variant "$(VARIANT)"
check7: setup
	$(LIFECYCLE) check7 --variant "$(VARIANT)"
publish7: setup
	$(LIFECYCLE) publish7 --variant "$(VARIANT)" $(if $(FORCE),--force)
remove7: setup
	$(LIFECYCLE) remove7 --variant "$(VARIANT)"
clean7: setup
	$(LIFECYCLE) clean7
# two or more F07 variants side by side: executions/07_comparison/<v1>_<v2>.html
compare7: setup
	$(LIFECYCLE) compare7 --variants "$(VARIANTS)"
