# Two commands do all set-up on a fresh machine: `make run` (the app) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.heirloom-installed

.PHONY: run test install clean-venv

run: $(STAMP)
	$(PY) main.py $(ARGS)

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]'
	# Only for the MTCNN weight files in facenet_pytorch/data/ (read by engine/core/faces/detect.py; its
	# Python code is never imported). --no-deps: its metadata pins old torch/numpy releases.
	$(PY) -m pip install --disable-pip-version-check -q --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
