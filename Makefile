# Diffusion Lab — the two commands a new user needs:
#   make run    set up .venv (if missing or out of date) and open the dashboard on http://localhost:8501
#   make test   set up .venv with the test tools and run the default test suite (no network, no GPU)
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PORT    ?= 8501
STREAMLIT ?= $(BIN)/streamlit
# HTTPS for the classroom: CERT=... KEY=... (or DIFFUSION_LAB_CERT / DIFFUSION_LAB_KEY in the environment)
CERT    ?= $(DIFFUSION_LAB_CERT)
KEY     ?= $(DIFFUSION_LAB_KEY)
SELF_SIGNED := openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=diffusion-lab -keyout key.pem -out cert.pem

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
# With CERT and KEY the room gets HTTPS; without, it still runs, with a warning: the passcode crosses in clear.
classroom: $(BIN)/.runtime-installed
	@test -n "$$DIFFUSION_LAB_PASSCODE" || { echo "set DIFFUSION_LAB_PASSCODE=... (the instructor's passcode) first"; exit 2; }
	@if [ -n "$(CERT)" ] || [ -n "$(KEY)" ]; then \
		[ -n "$(CERT)" ] && [ -n "$(KEY)" ] || { echo "HTTPS needs both CERT=... and KEY=... (got CERT='$(CERT)', KEY='$(KEY)')"; exit 2; }; \
		[ -r "$(CERT)" ] || { echo "certificate file $(CERT) not found or unreadable: check CERT=... (make one: $(SELF_SIGNED))"; exit 2; }; \
		[ -r "$(KEY)" ] || { echo "key file $(KEY) not found or unreadable: check KEY=..."; exit 2; }; \
		echo "Serving HTTPS on port $(PORT): learners open https://<this machine's address>:$(PORT)"; \
	else \
		echo "WARNING: serving plain HTTP: the instructor's passcode crosses the room's network in clear."; \
		echo "  For HTTPS, make a self-signed certificate once:  $(SELF_SIGNED)"; \
		echo "  then:  make classroom CERT=cert.pem KEY=key.pem   (browsers ask once to accept the certificate)"; \
	fi
	DIFFUSION_LAB_CLASSROOM=1 $(STREAMLIT) run dashboard.py --server.address 0.0.0.0 --server.port $(PORT) \
		--server.headless true --browser.gatherUsageStats false --server.fileWatcherType none \
		$(if $(CERT),--server.sslCertFile "$(CERT)" --server.sslKeyFile "$(KEY)")

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
