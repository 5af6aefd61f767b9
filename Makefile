# The two commands: `make lab` (bring up the local lab and run site.yml on it) and `make test`.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
LAB_HOSTS ?= 2

.PHONY: setup lab lab-up lab-down test unit lint sanity molecule

setup:
	@tools/setup.sh

lab: setup
	$(VENV)/bin/python tools/lab.py up --hosts $(LAB_HOSTS)
	$(VENV)/bin/python tools/lab.py run-site

lab-up: setup
	$(VENV)/bin/python tools/lab.py up --hosts $(LAB_HOSTS)

lab-down:
	python3 tools/lab.py down

test: setup
	$(VENV)/bin/python tests/run_all.py

unit: setup
	$(VENV)/bin/python tests/run_all.py --only unit

lint: setup
	$(VENV)/bin/python tests/run_all.py --only lint

sanity: setup
	$(VENV)/bin/python tests/run_all.py --only sanity

molecule: setup
	$(VENV)/bin/python tests/run_all.py --only molecule
