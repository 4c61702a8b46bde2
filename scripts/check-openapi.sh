#!/usr/bin/env bash
# Checks the checked-in OpenAPI 3.1 document, as CI runs it:
#
#   scripts/check-openapi.sh [SPEC]      # SPEC defaults to docs/openapi.json
#
# 1. validate:  openapi-spec-validator (OpenAPI 3.1 schema + semantic checks: unique
#               operationIds, path parameters that match the path template, ...); every
#               error is printed as `JSON path: message`.
# 2. problems:  the project's own rule: every 4xx/5xx response is documented as
#               `application/problem+json` (RFC 9457), which is what the server sends.
# 3. generate:  openapi-python-client generates a client with --fail-on-warning; any
#               warning or error it prints (an endpoint or parameter it skipped, "Unable
#               to parse", ...) fails the check, and every operation must come out as a
#               generated endpoint module.
# 4. build:     the generated client is byte-compiled (compileall) and every generated
#               module is imported (pkgutil.walk_packages).
# All four steps run even when one fails, and the last line says PASS or FAIL.
#
# Tools come from PyPI, pinned below (the full set, not only the top level), into a venv
# cached at $KEYHAVEN_OPENAPI_VENV (default ${XDG_CACHE_HOME:-$HOME/.cache}/keyhaven-openapi-venv),
# rebuilt when the pins or the Python change. Needs python3 >= 3.11 (openapi-python-client
# 0.29 requires it; set $PYTHON to pick one). Cold (venv built) about 20 s; warm about 4 s.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "check-openapi: $*" >&2; exit 2; }

[ $# -le 1 ] || die "usage: $0 [SPEC]"
spec_arg="${1:-docs/openapi.json}"
[ -f "$spec_arg" ] || die "no such file: $spec_arg"
spec="$(cd "$(dirname "$spec_arg")" && pwd)/$(basename "$spec_arg")"

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "$PY not found"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$PY is $("$PY" -V 2>&1); openapi-python-client needs Python >= 3.11"

# The pins: the top level first, then everything they pull in, as verified together.
pins=(
  openapi-spec-validator==0.9.0 openapi-python-client==0.29.1
  # runtime dependencies of the generated client
  httpx==0.28.1 attrs==26.1.0 python-dateutil==4.0.0
  # transitive
  annotated-doc==0.0.7 annotated-types==0.8.0 anyio==4.16.0 certifi==2026.10.19.post1
  h11==0.16.0 httpcore==1.0.9 idna==3.20 Jinja2==3.1.6 jsonschema==4.26.0
  jsonschema-path==0.5.0 jsonschema-specifications==2025.9.1 lazy-object-proxy==1.13.0
  markdown-it-py==4.3.0 MarkupSafe==3.0.4 mdurl==0.1.2 openapi-schema-validator==0.9.0
  pathable==0.6.0 pydantic==2.14.4 pydantic-settings==2.16.3 pydantic_core==2.50.5
  Pygments==2.21.0 python-dotenv==1.2.4 PyYAML==6.0.4 referencing==0.37.0
  rfc3339-validator==0.1.4 rich==15.0.0 rpds-py==2026.9.1 ruamel.yaml==0.19.1
  ruff==0.17.6 shellingham==1.5.4 six==1.17.0 typer==0.27.3 typing-inspection==0.4.5
  typing_extensions==4.16.0 tzdata==2026.6
)

venv="${KEYHAVEN_OPENAPI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/keyhaven-openapi-venv}"
want="$("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])') ${pins[*]}"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
command -v flock >/dev/null && { timeout 600 flock 9 || die "waited 10 min for $venv.lock"; }
if [ "$(cat "$venv/.keyhaven-pins" 2>/dev/null)" != "$want" ]; then
  echo "== tools: building $venv"
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    "${pins[@]}" || die "pip install failed"
  printf '%s' "$want" >"$venv/.keyhaven-pins"
fi
exec 9>&-
vpy="$venv/bin/python"
# The generator runs ruff from PATH on what it writes; without it, it warns (and fails).
export PATH="$venv/bin:$PATH"

work="$(mktemp -d "${TMPDIR:-/tmp}/check-openapi.XXXXXX")"
trap 'rm -rf "$work"' EXIT
failed=()

cat >"$work/validate.py" <<'EOF'
import json, sys
from openapi_spec_validator import OpenAPIV31SpecValidator

spec = json.load(open(sys.argv[1]))
if not str(spec.get("openapi", "")).startswith("3.1."):
    sys.exit(f"  expected an OpenAPI 3.1.x document, got openapi={spec.get('openapi')!r}")
seen = []
for e in OpenAPIV31SpecValidator(spec).iter_errors():
    line = f"  {e.json_path}: {e.message}"
    if line not in seen:
        seen.append(line)
print("\n".join(seen) or "  ok")
sys.exit(1 if seen else 0)
EOF

cat >"$work/problems.py" <<'EOF'
import json, sys

spec = json.load(open(sys.argv[1]))
bad = []
for path, item in spec.get("paths", {}).items():
    for method, op in item.items():
        if not isinstance(op, dict) or "responses" not in op:
            continue
        for code, resp in op["responses"].items():
            types = sorted(resp.get("content", {})) if isinstance(resp, dict) else []
            if str(code)[:1] in "45" and types and types != ["application/problem+json"]:
                bad.append(f"  $.paths['{path}'].{method}.responses['{code}']: {', '.join(types)}")
print("\n".join(bad) or "  ok")
sys.exit(1 if bad else 0)
EOF

cat >"$work/imports.py" <<'EOF'
import importlib, json, pkgutil, sys

import keyhaven_client

spec = json.load(open(sys.argv[1]))
methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ops = sum(1 for item in spec["paths"].values() for m in item if m in methods)
mods, endpoints, errors = 0, 0, []
for m in pkgutil.walk_packages(keyhaven_client.__path__, "keyhaven_client."):
    try:
        mod = importlib.import_module(m.name)
    except Exception as e:  # noqa: BLE001 - any failure to import is the finding
        errors.append(f"  {m.name}: {type(e).__name__}: {e}")
        continue
    mods += 1
    if m.name.startswith("keyhaven_client.api.") and hasattr(mod, "sync_detailed"):
        endpoints += 1
if endpoints != ops:
    errors.append(f"  {endpoints} endpoint modules generated for {ops} operations")
print("\n".join(errors) or f"  ok: {mods} modules import, {endpoints}/{ops} operations")
sys.exit(1 if errors else 0)
EOF

echo "== validate (openapi-spec-validator)"
timeout 120 "$vpy" "$work/validate.py" "$spec" || failed+=(validate)

echo "== error responses as application/problem+json"
"$vpy" "$work/problems.py" "$spec" || failed+=(problem+json)

echo "== generate (openapi-python-client)"
pkg="$work/client/keyhaven_client"
gen_ok=1
(cd "$work" && timeout 300 openapi-python-client generate --path "$spec" \
    --output-path "$pkg" --meta none --fail-on-warning) >"$work/generate.log" 2>&1 || gen_ok=0
# Anything beyond "Generating ..." is a warning or an error, whatever the exit code.
grep -vqE '^(Generating .*)?[[:space:]]*$' "$work/generate.log" && gen_ok=0
if [ "$gen_ok" = 1 ]; then
  echo "  ok"
else
  sed 's/^/  /' "$work/generate.log"
  failed+=(generate)
fi

echo "== build the generated client (compileall + import every module)"
if [ "$gen_ok" != 1 ]; then
  echo "  skipped: no client"
elif ! timeout 120 "$vpy" -m compileall -q "$pkg" >"$work/compile.log" 2>&1; then
  sed 's/^/  /' "$work/compile.log"
  failed+=(build)
elif ! PYTHONPATH="$work/client" timeout 120 "$vpy" "$work/imports.py" "$spec"; then
  failed+=(build)
fi

if [ ${#failed[@]} -eq 0 ]; then
  echo "check-openapi: PASS $spec_arg (valid OpenAPI 3.1; client generated, compiled, imported)"
else
  echo "check-openapi: FAIL $spec_arg (failed: ${failed[*]})"
  exit 1
fi
