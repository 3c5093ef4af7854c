# Diffusion Lab — the two commands a new user needs:
#   make run    set up .venv (if missing or out of date) and open the dashboard on http://localhost:8501
#   make test   set up .venv with the test tools and run the default test suite (no network, no GPU)
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PORT    ?= 8501

.PHONY: run classroom test test-slow test-gpu bench clean-venv

$(BIN)/.runtime-installed: requirements.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(BIN)/.test-installed: $(BIN)/.runtime-installed requirements-test.txt
	$(BIN)/pip install --quiet -r requirements-test.txt
	@touch $@

run: $(BIN)/.runtime-installed
	$(BIN)/streamlit run dashboard.py --server.address 127.0.0.1 --server.port $(PORT) \
		--server.headless true --browser.gatherUsageStats false --server.fileWatcherType none

# Classroom: serve the LAN; learners explore, the instructor unlocks controls with DIFFUSION_LAB_PASSCODE.
classroom: $(BIN)/.runtime-installed
	@test -n "$$DIFFUSION_LAB_PASSCODE" || { echo "set DIFFUSION_LAB_PASSCODE=... (the instructor's passcode) first"; exit 2; }
	DIFFUSION_LAB_CLASSROOM=1 $(BIN)/streamlit run dashboard.py --server.address 0.0.0.0 --server.port $(PORT) \
		--server.headless true --browser.gatherUsageStats false --server.fileWatcherType none

test: $(BIN)/.test-installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

test-slow: $(BIN)/.test-installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m slow

test-gpu: $(BIN)/.test-installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m gpu

bench: $(BIN)/.runtime-installed
	$(BIN)/python -m engine bench

clean-venv:
	rm -rf $(VENV)
