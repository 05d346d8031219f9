# go.mod pins toolchain go1.26.9; let the go command fetch it when the
# installed Go is older.
export GOTOOLCHAIN := auto

.PHONY: lab test peers vet build fuzz-smoke

## lab: start the mini-Internet on its embedded default topology
lab:
	go run ./cmd/applayer lab up

## test: install missing test peers, then vet and run every test under -race
test: peers
	go vet ./...
	APPLAYER_REQUIRE_PEERS=1 go test -race -timeout 15m ./...

peers:
	@scripts/install-peers.sh

build:
	go build -o bin/applayer ./cmd/applayer
