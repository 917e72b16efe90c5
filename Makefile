# The two commands of README.md: `make book` and `make test`. Both create .venv when it is missing.
# Also: `make sweep` (every notebook over other seeds; SWEEP_MODE=full at the published scale), `make twins`, `make repo-url`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
QUICK := .quickbook
# Each notebook must finish within this many seconds in quick mode (the budget is 90 s; CI is slower).
NB_TIMEOUT ?= 240
# The page the browser check must find math, a figure and a widget on.
CHECK_PAGE ?= book/fast_jvp/derivation.html

COLAB := .venv-colab
# Seeds that `make sweep` runs every notebook with, in quick mode (0 is the default seed, for comparison).
SEEDS ?= 0 1 2
CLAIMS := _build/claims

.PHONY: book test unit notebooks quickbook colab sweep twins repo-url vendor chromium clean

$(STAMP): requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	@# pip's log goes to a file (this machine's pip config adds noisy warnings); it is shown on failure.
	$(BIN)/pip install -q -r requirements.txt -e . > $(VENV)/pip.log 2>&1 || { grep -v "^WARNING: Location" $(VENV)/pip.log; exit 1; }
	$(BIN)/python -c "import helpers, torch, jupyter_book" # fail here, not later, when the install did
	touch $@

# MathJax and the widget JavaScript, served from the built site so pages work offline.
_vendor/.stamp:
	rm -rf _vendor && mkdir -p _vendor/npm _vendor/mathjax/output/chtml/fonts _vendor/widgets
	cd _vendor/npm && npm pack --silent mathjax@3.2.2 @jupyter-widgets/html-manager@1.0.6 requirejs@2.3.7 >/dev/null
	cd _vendor/npm && for f in *.tgz; do mkdir -p "$${f%.tgz}" && tar xzf "$$f" -C "$${f%.tgz}"; done
	cp _vendor/npm/mathjax-3.2.2/package/es5/tex-mml-chtml.js _vendor/mathjax/
	cp -r _vendor/npm/mathjax-3.2.2/package/es5/output/chtml/fonts/woff-v2 _vendor/mathjax/output/chtml/fonts/
	cd _vendor/npm/jupyter-widgets-html-manager-1.0.6/package/dist && cp embed-amd.js *.woff *.woff2 *.ttf *.eot *.svg ../../../../widgets/
	cp _vendor/npm/requirejs-2.3.7/package/require.js _vendor/widgets/
	rm -rf _vendor/npm && touch $@
vendor: _vendor/.stamp

# Debian's Chromium for the real-browser check of the built pages.
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Every chapter executed in full mode, rendered under -W -n, then every page opened in Chromium.
# BOOK_STRICT=1: a claim check that this run contradicts fails the build (helpers.claims).
# TQDM_DISABLE=1: progress bars belong in a live kernel, not in the static page.
book: $(STAMP) _vendor/.stamp chromium
	rm -rf $(CLAIMS)/book
	$(BIN)/python tools/exercise_index.py
	$(BIN)/python tools/scoreboard.py  # a placeholder until the notebooks have recorded their claims
	BOOK_MODE=full BOOK_STRICT=1 BOOK_CLAIMS_DIR=$(CURDIR)/$(CLAIMS)/book TQDM_DISABLE=1 \
	  $(BIN)/jupyter-book build . --all -W -n --keep-going  # --all: re-execute every chapter, also when only helpers/ changed
	@# The scoreboard from this build's records; the second build re-reads only the pages that changed.
	$(BIN)/python tools/scoreboard.py --claims $(CLAIMS)/book --strict
	BOOK_MODE=full $(BIN)/jupyter-book build . -W -n --keep-going
	$(BIN)/python tools/check_pages.py _build/html --shots _build/screenshots --figure-shots _build/screenshots/figures
	$(BIN)/python tools/check_pages.py _build/html $(CHECK_PAGE) --require math,image,widget
	@echo "The book is ready: open file://$(CURDIR)/_build/html/index.html"

# Unit tests, every notebook in quick mode, the book's markup under -W -n, one page in Chromium,
# and two notebooks on Colab's stock stack.
test: $(STAMP) _vendor/.stamp chromium unit notebooks quickbook colab

unit: $(STAMP)
	BOOK_MODE=quick $(BIN)/pytest -n 2 --durations=15 --doctest-modules tests helpers

notebooks: $(STAMP)
	$(BIN)/python tools/quickbook.py $(QUICK)
	rm -rf $(CLAIMS)/quick
	BOOK_MODE=quick BOOK_CLAIMS_DIR=$(CURDIR)/$(CLAIMS)/quick/seed0 TQDM_DISABLE=1 $(BIN)/pytest -n 2 --nbmake --overwrite \
	  --timeout=$(NB_TIMEOUT) --durations=0 $(QUICK)/book

quickbook: $(STAMP) _vendor/.stamp
	$(BIN)/python tools/exercise_index.py --out $(QUICK)/book/_generated/exercises.md
	$(BIN)/python tools/scoreboard.py --claims $(CLAIMS)/quick/seed0 --strict --out $(QUICK)/book/_generated/scoreboard.md
	$(BIN)/jupyter-book build $(QUICK) -W -n --keep-going
	$(BIN)/python tools/check_pages.py $(QUICK)/_build/html $(CHECK_PAGE) --require math,image,widget \
	  --shots $(QUICK)/_build/screenshots

# Rewrite the outputs-free .ipynb twins from their MyST-markdown sources.
twins: $(STAMP)
	$(BIN)/python -c "import sys; sys.path.insert(0, 'tests'); from book_files import notebook_sources; \
	  print('\n'.join(map(str, notebook_sources())))" | xargs -r $(BIN)/jupytext --update --to ipynb -q

# Every notebook with each of SEEDS as BOOK_SEED, in quick mode (SWEEP_MODE=full for the published
# scale): asserts must hold on every seed. Then the claims recorded per seed are compared
# (tools/claims_report.py): what flips with the seed. The full-mode outcomes are kept in
# book/seed_sweep.json, which the scoreboard shows under each verdict (run with SEEDS="1 2").
# Two notebooks run at a time, except those that time code (`quickbook.py --timed`): they run
# one at a time afterwards, so that no time ratio is measured on cores another notebook uses.
SWEEP_MODE ?= quick
SWEEP_TIMEOUT ?= $(if $(filter full,$(SWEEP_MODE)),1800,$(NB_TIMEOUT))
SWEEP_PYTEST = BOOK_MODE=$(SWEEP_MODE) BOOK_SEED=$$s TQDM_DISABLE=1 \
  BOOK_CLAIMS_DIR=$(CURDIR)/$(CLAIMS)/sweep-$(SWEEP_MODE)/seed$$s \
  $(BIN)/pytest -q --nbmake --timeout=$(SWEEP_TIMEOUT)
sweep: $(STAMP)
	@start=$$(date +%s); for s in $(SEEDS); do \
	  timed=$$($(BIN)/python tools/quickbook.py .sweep/seed$$s --timed); \
	  echo "== BOOK_SEED=$$s, $(SWEEP_MODE) mode; then, one at a time, the $$(wc -w <<< $$timed) that time code"; \
	  $(SWEEP_PYTEST) -n 2 $$(for t in $$timed; do echo --ignore=$$t; done) .sweep/seed$$s/book || exit 1; \
	  if [ -n "$$timed" ]; then $(SWEEP_PYTEST) $$timed || exit 1; fi; \
	done; echo "sweep over seeds $(SEEDS), $(SWEEP_MODE) mode: $$(( $$(date +%s) - start )) s"
	$(BIN)/python tools/claims_report.py $(CLAIMS)/sweep-$(SWEEP_MODE) \
	  $(if $(filter full,$(SWEEP_MODE)),--save book/seed_sweep.json)

# Two notebooks (a dense one and a data one) on Colab's stock stack (tests/colab_stack.txt) plus
# helpers installed from a wheel with its declared dependencies, run from a folder outside the
# repository, through their .ipynb twins as Colab opens them. Python 3.11: the CPU torch wheel
# this project pins exists here for 3.11 only (a 3.12 venv would download a CUDA build).
COLAB_NOTEBOOKS ?= book/fast_jvp/derivation.ipynb book/radius_kmeans/method.ipynb
$(COLAB)/.stack: tests/colab_stack.txt
	rm -rf $(COLAB) && $(PY) -m venv $(COLAB)
	$(COLAB)/bin/pip install -q -r tests/colab_stack.txt > $(COLAB)/pip.log 2>&1 || { cat $(COLAB)/pip.log; exit 1; }
	$(COLAB)/bin/python -m ipykernel install --prefix $(COLAB) --name book-colab > /dev/null
	touch $@
colab: $(STAMP) $(COLAB)/.stack
	rm -rf $(COLAB)/dist && $(COLAB)/bin/pip wheel -q --no-deps -w $(COLAB)/dist . > $(COLAB)/pip.log 2>&1
	$(COLAB)/bin/pip uninstall -q -y helpers > /dev/null 2>&1 || true
	$(COLAB)/bin/pip install -q $(COLAB)/dist/helpers-*.whl >> $(COLAB)/pip.log 2>&1 || { cat $(COLAB)/pip.log; exit 1; }
	if $(COLAB)/bin/python -c "import myst_nb" 2>/dev/null; then echo "myst_nb must not be in $(COLAB)"; exit 1; fi
	d=$$(mktemp -d) && cd $$d && BOOK_MODE=quick JUPYTER_PATH=$(CURDIR)/$(COLAB)/share/jupyter \
	  $(CURDIR)/$(BIN)/python $(CURDIR)/tools/run_notebook.py --kernel book-colab --copy-to $$d \
	  $(addprefix $(CURDIR)/,$(COLAB_NOTEBOOKS))

# Rewrite the repository URL in the README and every install cell from _config.yml (a fork sets
# repository.url there, then runs this).
repo-url: $(STAMP)
	$(BIN)/python tools/repo_url.py
	$(MAKE) twins

clean:
	rm -rf _build $(QUICK) .sweep $(COLAB)
