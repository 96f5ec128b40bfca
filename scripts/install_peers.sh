#!/usr/bin/env bash
# Install the peer SNN libraries (snnTorch, SpikingJelly, Norse) into the current environment for the
# side-by-side benchmarks and equivalence tests. They are never dependencies of overlooked: pip would
# otherwise replace the CPU torch with a CUDA build, so every install is constrained to the torch that is
# already there. SpikingJelly and Norse go in with --no-deps, then their real runtime needs.
set -euo pipefail
PY="${PYTHON:-python}"
torch_version=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==${torch_version}" > "$constraints"
"$PY" -m pip install -q -c "$constraints" "snntorch==1.0.0"
"$PY" -m pip install -q -c "$constraints" --no-deps "spikingjelly==2.0.0" "norse==1.1.0"
"$PY" -m pip install -q -c "$constraints" numpy h5py loguru packaging requests scipy tqdm nir nirtorch pbr six
"$PY" - <<'PY'
import importlib
for name in ("snntorch", "spikingjelly", "norse"):
    mod = importlib.import_module(name)
    print(f"{name} {getattr(mod, '__version__', '?')}")
PY
