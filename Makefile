# shmchannels — the two commands are `make run` and `make test`; both set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := redis-server chromium chromium-driver wrk gcc libc6-dev python3-dev

.PHONY: install system-deps run test bench conformance clean

# Debian packages the suite needs (a real redis-server, a real browser); installed only if missing.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): setup.py $(wildcard shmlayer/_fastpath*.c shmlayer/_fastpath*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

install: system-deps $(STAMP)

# exec: the master replaces the shell, so a signal sent to this recipe reaches it.
run: install
	cd example && ../$(PY) manage.py migrate --noinput -v 0 && exec ../$(VENV)/bin/shmchannels -c shmchannels.conf.py

test: install
	$(PY) -m pytest

$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]' --config-settings editable_mode=compat
	touch $@

bench: install $(VENV)/.bench-installed
	$(PY) -m bench

conformance: install
	bash tools/autobahn.sh

clean:
	rm -rf $(VENV) .pytest_cache .bench
