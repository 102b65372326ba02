# heldar: two commands do all the set-up on a fresh machine with Python 3.11.
#   make demo   run heldar on the embedded defaults (embedded PostgreSQL, local Ray, simulated cameras)
#   make test   run the whole test suite (real PostgreSQL, Ray, ffmpeg and RTSP)

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo serve test lint bench clean deps constraints console-vendor

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	@echo "installing heldar and its dependencies into $(VENV) (about 1 GB the first time: Ray, OpenCV, PyAV; a few minutes) ..."
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -c constraints.txt -e '.[dev]'
	touch $@

# Regenerate the constraints from the working venv (after a deliberate upgrade); tests/unit/test_pins.py
# checks that pyproject.toml still accepts them.
constraints: $(BIN)/.installed
	@{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^heldar'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/heldar demo

serve: $(BIN)/.installed
	$(BIN)/heldar serve

# Debian packages some tests need (the fault suite restarts a real PostgreSQL server; tests/deploy runs promtool;
# the MQTT tests run a mosquitto broker; tests/console drive chromium and firefox); installed when missing.
deps:
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	  echo "installing Debian's postgresql (the fault suite stops and restarts a real server)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi
	@if ! command -v promtool >/dev/null 2>&1; then \
	  echo "installing Debian's prometheus for promtool (tests/deploy checks and unit-tests the alert rules)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
	  echo "installing Debian's mosquitto (the MQTT tests publish to a real broker)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	fi
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v firefox-esr >/dev/null 2>&1; then \
	  echo "installing Debian's chromium and firefox-esr (tests/console drive the operator console in both, headless)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver firefox-esr >/dev/null; \
	fi

test: $(BIN)/.installed deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(BIN)/.installed
	$(BIN)/python -m bench.recording

# The console's one JavaScript library, fetched from npm at build time and committed (no CDN at run time).
HLS_JS_VERSION ?= 1.7.4
console-vendor:
	rm -rf build/hls.js && mkdir -p build/hls.js
	cd build/hls.js && npm pack --silent hls.js@$(HLS_JS_VERSION) && tar xzf hls.js-$(HLS_JS_VERSION).tgz
	cp build/hls.js/package/dist/hls.light.min.mjs api/console/vendor/hls.light.min.mjs
	cp build/hls.js/package/LICENSE api/console/vendor/hls.js-LICENSE.txt

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
