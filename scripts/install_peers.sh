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
"$PY" -m pip install -q --disable-pip-version-check -c "$constraints" "snntorch==1.0.0"
"$PY" -m pip install -q --disable-pip-version-check -c "$constraints" --no-deps "spikingjelly==2.0.0" "norse==1.1.0"
"$PY" -m pip install -q --disable-pip-version-check -c "$constraints" numpy h5py loguru packaging requests scipy tqdm nir nirtorch pbr six
# Import what the benchmark and the equivalence tests use, and print the installed versions.
"$PY" - <<'PY'
import importlib
import importlib.metadata as md

for module in ("snntorch", "spikingjelly.activation_based.neuron", "norse.torch"):
    importlib.import_module(module)
for dist in ("snntorch", "spikingjelly", "norse"):
    print(f"{dist} {md.version(dist)}")
PY
