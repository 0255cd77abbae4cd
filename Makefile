# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON_BOOT ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pip prints a line for every local index location it skips; keep the real errors.
PIP_QUIET := 2>&1 | grep -v '^WARNING: Location' || true

.PHONY: install test test-fast demo bench gradescope-sim release notebooks solutions sandbox clean

install: $(STAMP) sandbox

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV) || python3 -m venv $(VENV)
	@echo "installing into $(VENV) (first run takes about a minute)"
	@$(PY) -m pip install -q --upgrade pip $(PIP_QUIET)
	@$(PY) -m pip install -q -r requirements.txt $(PIP_QUIET)
	@$(PY) -m pip install -q --no-deps -e . $(PIP_QUIET)
	@$(PY) -c "import torch, nbgrader, hypothesis, transformers" || { echo "install failed: see the pip output above"; exit 1; }
	@touch $@

# The grader's strongest isolation uses bubblewrap. Install it where we can
# (root with apt); elsewhere the grader falls back and says so when it starts.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap for the grader's sandbox"; \
	    (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null 2>&1 \
	      || echo "note: could not install bubblewrap; the grader will use a weaker isolation level"; \
	  else echo "note: bubblewrap (bwrap) not found; the grader will use a weaker isolation level"; fi; }

test: install
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: install
	$(PY) -m pytest -x -q -m "not slow"

demo: install
	$(PY) -m autograder demo

bench: install
	$(PY) -m autograder bench --out build/bench

# The Gradescope package in a simulated container: setup.sh into a fresh venv, grading without
# CAP_SYS_ADMIN or network (a few minutes; needs root). Also part of `make test`, marked slow.
gradescope-sim: install
	$(PY) -m pytest -q -n 0 -m slow tests/test_gradescope.py

notebooks: install
	$(PY) -m autograder build

release: install
	$(PY) -m autograder release

solutions: install
	$(PY) -m autograder solutions --out build/solutions

clean:
	rm -rf build assignments/release assignments/autograded assignments/feedback assignments/submitted assignments/gradebook.db
