# The two commands of README.md: `make book` and `make test`. Both create .venv when it is missing.
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

.PHONY: book test unit notebooks quickbook twins vendor chromium clean

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
book: $(STAMP) _vendor/.stamp chromium
	BOOK_MODE=full $(BIN)/jupyter-book build . --all -W -n --keep-going  # --all: re-execute every chapter, also when only helpers/ changed
	$(BIN)/python tools/check_pages.py _build/html --shots _build/screenshots
	$(BIN)/python tools/check_pages.py _build/html $(CHECK_PAGE) --require math,image,widget
	@echo "The book is ready: open file://$(CURDIR)/_build/html/index.html"

# Unit tests, every notebook in quick mode, the book's markup under -W -n, one page in Chromium.
test: $(STAMP) _vendor/.stamp chromium unit notebooks quickbook

unit: $(STAMP)
	BOOK_MODE=quick $(BIN)/pytest -n 2 tests

notebooks: $(STAMP)
	$(BIN)/python tools/quickbook.py $(QUICK)
	BOOK_MODE=quick $(BIN)/pytest -n 2 --nbmake --overwrite --timeout=$(NB_TIMEOUT) \
	  --durations=0 $(QUICK)/book

quickbook: $(STAMP) _vendor/.stamp
	$(BIN)/jupyter-book build $(QUICK) -W -n --keep-going
	$(BIN)/python tools/check_pages.py $(QUICK)/_build/html $(CHECK_PAGE) --require math,image,widget \
	  --shots $(QUICK)/_build/screenshots

# Rewrite the outputs-free .ipynb twins from their MyST-markdown sources.
twins: $(STAMP)
	$(BIN)/python -c "import sys; sys.path.insert(0, 'tests'); from book_files import notebook_sources; \
	  print('\n'.join(map(str, notebook_sources())))" | xargs -r $(BIN)/jupytext --update --to ipynb -q

clean:
	rm -rf _build $(QUICK)
