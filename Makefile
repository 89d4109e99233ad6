# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# the project into it when pyproject.toml changed (or on first use).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --only-binary=grpcio -e ".[dev,spark]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/riskcast demo $(if $(CUSTOMERS),--customers $(CUSTOMERS)) --workdir $(or $(WORKDIR),riskcast-work)

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) riskcast-work .pytest_cache
