#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image, with the zip extracted in
# $GRADESCOPE_ROOT/source (/autograder/source there). It makes a virtual environment holding only what grading
# needs (torch's CPU wheel, numpy, hypothesis) and makes the references readable by root alone.
set -euo pipefail
root="${GRADESCOPE_ROOT:-/autograder}"
source="$root/source"
venv="$source/.venv"
python="${AUTOGRADER_BASE_PYTHON:-python3}"
torch_index="https://download.pytorch.org/whl/cpu"

# The base image's own Python serves if it is 3.10 or newer (Gradescope's Ubuntu 22.04 image ships 3.10).
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "setup.sh: $python is older than 3.10: choose a newer Ubuntu base image in the autograder settings" >&2
  exit 1
fi

# bubblewrap gives the strongest isolation where the container allows user namespaces; Debian's Python
# needs python3-venv for `-m venv`. Install only what is missing.
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
"$python" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || echo "setup.sh: could not install ${missing[*]}; the grader will say which isolation level it gets"
fi

"$python" -m venv --clear "$venv"
# torch's own index holds the CPU-only wheel (no CUDA libraries). Where it cannot be reached (an offline
# mirror), pip's configured sources must provide it: the `+cpu` pin never lets a CUDA build in instead.
index=()
if "$venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=30)' \
    "$torch_index/torch/" 2>/dev/null; then
  index=(--extra-index-url "$torch_index")
else
  echo "setup.sh: $torch_index cannot be reached; taking torch's CPU wheel from pip's configured sources"
fi
"$venv/bin/python" -m pip install --no-input --progress-bar off "${index[@]}" -r "$source/requirements-grading.txt"

"$venv/bin/python" - <<'PY'
from importlib import metadata

import torch

cuda = sorted(d.metadata["Name"] for d in metadata.distributions() if d.metadata["Name"].lower().startswith("nvidia"))
if cuda or torch.version.cuda:
    raise SystemExit(f"setup.sh: a CUDA build was installed (torch CUDA {torch.version.cuda}, {cuda}); "
                     "grading needs torch's CPU wheel only")
print(f"setup.sh: torch {torch.__version__} (CPU only)")
PY

# Compiled now, so that grading never writes bytecode; then the references, rubrics and the source notebook
# (which holds the same reference code), with their bytecode, become readable by root alone. The grader runs
# as root; student code runs as another user (README, "Gradescope").
"$venv/bin/python" -m compileall -q "$source/autograder" "$source/solutions"
# The examples every check draws and the reference's outputs for them, recorded once here so that a correct
# submission is graded without searching (see autograder/replays.py). They are the reference's answers:
# root alone may read them too.
(cd "$source" && "$venv/bin/python" -m autograder replays) \
  || echo "setup.sh: could not record the replays; each grading run will record them itself"
mkdir -p "$source/build"
chmod -R go-rwx "$source/solutions" "$source/autograder/rubrics" "$source/assignments" "$source/gradescope.json" \
  "$source/build"
echo "setup.sh: done"
