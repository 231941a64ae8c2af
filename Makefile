# stackcue: `make setup` then `make test` on a fresh machine; `make demo` runs the main job;
# `sudo make install` puts the live service on a Pi.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages: the broker, audio cues and their checks, browser tests, what builds vqf on a Pi, and
# systemd-analyze (tests/test_install.py verifies the installed units); libnm's typelib and PyGObject, which
# tests/test_network_files.py runs under /usr/bin/python3 (not the venv) to read the profiles as NetworkManager does;
# PostgreSQL, which the hub's tests start in a temporary folder (initdb, a free port) for a club's store.
APT_PACKAGES := mosquitto espeak-ng sox chromium chromium-driver g++ python3-dev python3-venv systemd gir1.2-nm-1.0 python3-gi postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR := out/demo
# `sudo make install`: the Pi's live service (config/install.sh). DESTDIR stages it under a directory (the
# tests); PURGE=1 makes `make uninstall` also remove the configuration, the logbook and the user.
PREFIX ?= /opt/stackcue
DESTDIR ?=
PURGE ?=
WHEEL_DIR ?=

.PHONY: setup system-packages venv test test-fast demo bench bench-scale lint install uninstall clean

setup: system-packages venv

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "Debian packages present"; fi

venv: $(BIN)/stackcue

$(BIN)/stackcue: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

# Two workers for everything but the real-time tests, which run alone after (CPU load skews their timing);
# --dist worksteal balances the two workers (measured here: 194 s, against 212 s with loadscope).
test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not serial"
	$(BIN)/python -m pytest -q -m serial

test-fast: venv
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not slow"

demo: venv
	@mkdir -p $(DEMO_DIR)
	$(BIN)/stackcue simulate -o $(DEMO_DIR)/run.csv --minutes 10 --trunk --seed 7
	$(BIN)/stackcue analyze $(DEMO_DIR)/run.csv
	@echo; echo "--- the same runner on emulated MPU-6050s on an emulated I2C bus (time 10x faster) ---"
	$(BIN)/stackcue record -o $(DEMO_DIR)/emulated.csv --emulate --speed 10 --minutes 2 --seed 7
	$(BIN)/stackcue analyze $(DEMO_DIR)/emulated.csv
	@echo; echo "--- live: mosquitto, stackcue run (replay at 12x), a phone subscriber and the cue client ---"
	$(BIN)/python demo/live_demo.py

bench: venv
	$(BIN)/python bench/bench_analyze.py
	$(BIN)/python bench/bench_driver.py
	$(BIN)/python bench/bench_live.py
	$(BIN)/python bench/bench_logbook.py
	$(BIN)/python bench/bench_report.py
	$(BIN)/python bench/bench_commands.py
	$(BIN)/python bench/bench_hub_sync.py

# issue 18's growth check: analyze at 30, 60 and 120 minutes, and with one sensor
bench-scale: venv
	$(BIN)/python bench/bench_analyze.py 30
	$(BIN)/python bench/bench_analyze.py 120
	$(BIN)/python bench/bench_analyze.py 60 pelvis

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

install:
	@DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" PYTHON="$(PY)" WHEEL_DIR="$(WHEEL_DIR)" bash config/install.sh install

uninstall:
	@DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" PURGE="$(PURGE)" bash config/install.sh uninstall

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .ruff_cache tests/artifacts
	find . -name __pycache__ -prune -exec rm -rf {} +
