#!/usr/bin/env bash
# Builds, checks and tests the Python package `keyhaven`, as CI runs it:
#
#   scripts/with-server.sh clients/python/scripts/test.sh [PYTEST ARGS...]
#   scripts/with-server.sh clients/python/scripts/test.sh --bench   # steps 1-3, then bench/bench.py
#
# 1. venv:    a venv with the pinned requirements-test.txt, cached at
#             $KEYHAVEN_PYTHON_VENV (default ${XDG_CACHE_HOME:-$HOME/.cache}/keyhaven-python-venv),
#             rebuilt when the pins or the Python change (set $PYTHON to pick one).
# 2. build:   `python -m build` makes the sdist, and the wheel from the sdist; both must
#             hold the licences, the README and py.typed.
# 3. install: the wheel, into the venv: the suite tests the package as users install it.
# 4. types:   mypy --strict over the package.
# 5. tests:   pytest (the suite needs KEYHAVEN_URL and KEYHAVEN_ROOT_KEY, which
#             scripts/with-server.sh sets; without them it skips, or fails under CI=true).
set -euo pipefail
pkg="$(cd "$(dirname "$0")/.." && pwd)"
cd "$pkg"

die() { echo "clients/python/test: $*" >&2; exit 2; }

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "$PY not found"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "$PY is older than 3.9"

venv="${KEYHAVEN_PYTHON_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/keyhaven-python-venv}"
want="$("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])') $(sha256sum requirements-test.txt | cut -d' ' -f1)"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
command -v flock >/dev/null && { timeout 600 flock 9 || die "waited 10 min for $venv.lock"; }
if [ "$(cat "$venv/.keyhaven-pins" 2>/dev/null)" != "$want" ]; then
  echo "== venv: building $venv"
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    -r requirements-test.txt || die "pip install failed"
  printf '%s' "$want" >"$venv/.keyhaven-pins"
fi
vpy="$venv/bin/python"

dist="$(mktemp -d "${TMPDIR:-/tmp}/keyhaven-python-dist.XXXXXX")"
trap 'rm -rf "$dist"; exec 9>&-' EXIT

echo "== build (sdist, then the wheel from it)"
timeout 300 "$vpy" -m build --no-isolation --outdir "$dist" . >"$dist/build.log" 2>&1 \
  || { cat "$dist/build.log"; die "python -m build failed"; }
"$vpy" - "$dist" <<'PY'
import sys, tarfile, zipfile
from pathlib import Path

dist = Path(sys.argv[1])
wheels, sdists = list(dist.glob("keyhaven-*.whl")), list(dist.glob("keyhaven-*.tar.gz"))
assert len(wheels) == 1 and len(sdists) == 1, (wheels, sdists)
wheel = zipfile.ZipFile(wheels[0]).namelist()
sdist = tarfile.open(sdists[0]).getnames()
missing = [f"wheel: {n}" for n in ("keyhaven/py.typed", "keyhaven/__init__.py") if n not in wheel]
missing += [f"wheel: {n}" for n in ("LICENSE-MIT", "LICENSE-APACHE")
            if not any(w.endswith(f".dist-info/licenses/{n}") for w in wheel)]
missing += [f"sdist: {n}" for n in ("LICENSE-MIT", "LICENSE-APACHE", "README.md", "pyproject.toml",
                                    "src/keyhaven/py.typed", "tests/conftest.py")
            if not any(s.endswith("/" + n) for s in sdist)]
if missing:
    sys.exit("missing from the distributions: " + ", ".join(missing))
print(f"  ok: {wheels[0].name} ({len(wheel)} files), {sdists[0].name} ({len(sdist)} files)")
PY

echo "== install the wheel"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-input --no-deps \
  --force-reinstall "$dist"/keyhaven-*.whl

if [ "${1:-}" = "--bench" ]; then
  echo "== bench (bench/bench.py)"
  "$vpy" "$pkg/bench/bench.py"
  exit 0
fi

echo "== types (mypy --strict)"
(cd "$pkg" && "$venv/bin/mypy") | sed 's/^/  /'

echo "== tests (pytest)"
cd "$pkg"
"$vpy" -m pytest -q "$@"
