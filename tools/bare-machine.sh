#!/usr/bin/env bash
# Runs a command as on a machine with only Node and a C++ compiler, as far as the tests can
# tell: the optional Debian packages' files (Fashion-MNIST, Chromium, PyTorch) are hidden under
# empty folders in a private mount namespace (needs root or unprivileged user namespaces).
# Usage: tools/bare-machine.sh npm test
set -euo pipefail
hidden=(/usr/share/datasets/fashion-mnist /usr/lib/chromium /usr/lib/python3/dist-packages)
exec unshare --mount --propagation private bash -c '
  set -euo pipefail
  empty=$(mktemp -d)
  for d in "${@:1:'${#hidden[@]}'}"; do if [ -d "$d" ]; then mount --bind "$empty" "$d"; fi; done
  shift '${#hidden[@]}'
  exec "$@"
' bash "${hidden[@]}" "$@"
