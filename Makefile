# go.mod pins toolchain go1.26.9; let the go command fetch it when the
# installed Go is older.
export GOTOOLCHAIN := auto

# BIN is where make build puts applayer (and make lab runs it from).
BIN ?= bin/applayer

.PHONY: lab test peers vet build fuzz-smoke

## lab: start the mini-Internet on its embedded default topology. Built, not
## "go run": go run exits 1 after any Ctrl-C (cmd/go marks an interrupted
## build as failed), which made make report "Error 1"; the lab itself exits
## 0 on SIGINT/SIGTERM (TestMakeLabCtrlC).
lab: build
	$(BIN) lab up

## test: install missing test peers, then vet and run every test under -race
test: peers
	go vet ./...
	APPLAYER_REQUIRE_PEERS=1 go test -race -timeout 15m ./...

peers:
	@scripts/install-peers.sh

build:
	go build -o $(BIN) ./cmd/applayer
