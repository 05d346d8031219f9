#!/usr/bin/env bash
# Installs the interop test peers listed in scripts/peers.txt from Debian's
# packages (or, for Go programs, with go install from a pinned module) when
# their commands are missing. Fails, naming them, when it
# cannot install them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
missing_pkgs=()
missing_cmds=()
# Go programs ("go-tool:DIR" in peers.txt: a module under the repository
# pinning the program and its dependencies with a tool directive) are
# built from the Go module proxy into go's bin directory, where
# testkit.Peer looks too.
gobin=$(GOTOOLCHAIN=auto go env GOBIN 2>/dev/null || true)
if [ -z "$gobin" ]; then
  gopath=$(GOTOOLCHAIN=auto go env GOPATH 2>/dev/null || true)
  gobin="${gopath%%:*}/bin"
fi
while read -r cmd pkg; do
  case "$cmd" in ''|'#'*) continue ;; esac
  case "$pkg" in
  go-tool:*)
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$gobin/$cmd" ]; then
      echo "installing test peer $cmd (go install tool in ${pkg#go-tool:})" >&2
      if ! (cd "$here/../${pkg#go-tool:}" && GOTOOLCHAIN=auto GOFLAGS= GOBIN="$gobin" go install tool >&2); then
        echo "make test: cannot build test peer $cmd (${pkg#go-tool:}: go install tool)" >&2
        exit 1
      fi
    fi
    continue
    ;;
  esac
  ok=1
  if [ "$cmd" = nc ]; then
    # The tests need OpenBSD netcat's flags (-N, -u with -w).
    nc -h 2>&1 | grep -qi openbsd || ok=0
  elif [ "$cmd" = perl-tls ]; then
    # swaks speaks STARTTLS and TLS through these Perl modules.
    perl -MNet::SSLeay -MIO::Socket::SSL -e1 2>/dev/null || ok=0
  elif ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    ok=0
  fi
  if [ $ok = 0 ]; then
    missing_cmds+=("$cmd")
    missing_pkgs+=("$pkg")
  fi
done < "$here/peers.txt"
[ ${#missing_pkgs[@]} -eq 0 ] && exit 0

# shellcheck disable=SC2207
pkgs=($(printf '%s\n' "${missing_pkgs[@]}" | sort -u))
echo "installing test peers: ${pkgs[*]}" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
fi
if [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then
  export DEBIAN_FRONTEND=noninteractive
  if $sudo apt-get update -q >&2 && $sudo apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2; then
    exit 0
  fi
fi
echo "make test: missing test peers: commands ${missing_cmds[*]} (Debian packages: ${pkgs[*]}); install them with: apt-get install ${pkgs[*]}" >&2
exit 1
