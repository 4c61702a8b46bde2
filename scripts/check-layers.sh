#!/usr/bin/env bash
# Checks the workspace's layering, as CI runs it (fast, no network, no compiling):
#
#   scripts/check-layers.sh               # check this checkout; exit 1 if anything is found
#   scripts/check-layers.sh --self-test   # check the checker against a fixture tree
#   scripts/check-layers.sh --root DIR    # check another tree laid out like this one
#
# Each offence is printed as `file:line: what is wrong (the import)`, one per import
# named (a cycle also lists the import behind each of its edges), and the last line says
# PASS or FAIL. The rules, crate by crate over crates/*/src:
#
# 1. No module cycles. A module is one file under src/ (inline modules belong to their
#    file; `foo.rs` and `foo/mod.rs` both are module `foo`; lib.rs is the crate root, and
#    main.rs is skipped when a lib.rs exists, since the binary uses the library by name).
#    File A imports file B when A's code names a path that resolves into B: `crate::x::y`,
#    `super::x`, `self::x`, a bare `x::y` where `x` is a child module, a name bound by a
#    `use`, or a module brought in by a glob (`use super::*` makes the parent's children
#    nameable). The path resolves to the deepest file module it names, so
#    `crate::routes::keys::KeyView` is routes/keys.rs and `crate::routes::Page` is
#    routes/mod.rs. Two things are not imports:
#      - declaring a module (`mod x;`), and an ancestor re-exporting a descendant's items
#        (`pub use x::Y;`, `pub(crate) use ...`): a parent is a facade for its children;
#      - anything in test code: an item under `#[cfg(test)]` (the `mod tests { ... }`
#        block, a `#[cfg(test)] use`), a file declared by `#[cfg(test)] mod x;`, and
#        crates/*/tests/. So are comments, doc links and string contents.
#      - a module naming its own ancestor's items (`super::Engine` in engine/keys.rs,
#        `crate::Thing` defined in lib.rs): a directory module and its children are one
#        unit, whose mod.rs may declare shared types and dispatch to the children.
#    Every other use counts: a parent calling into a child, and above all siblings and
#    unrelated modules naming each other. Two modules that import each other, or a
#    longer circle of them, form a cycle: shared code goes in a module of their own
#    that none of them imports back.
#    Every cycle of two modules is reported, and for each module its shortest longer
#    cycle, if it has one.
# 2. Nothing outside crates/server/src/routes/ imports a file under it, except the router
#    (app.rs) and openapi.rs (which documents the routes).
# 3. No route module imports another: routes/mod.rs is the shared helpers module that
#    route files may import; routes/keys.rs naming `super::keyspaces`,
#    `crate::routes::owners::...` etc. is an offence. (A route split into a folder,
#    routes/keys/*.rs, is one route module.)
# 4. The CLI (crates/cli/src) names no `keyhaven_server::` path but the app builder:
#    serve, router, AppState, shutdown_signal, Config, app.
# 5. The service crate neither depends on (any Cargo.toml section) nor names axum, hyper,
#    hyper-util, tower or tower-http: it is the application without HTTP.
# 6. Crates depend one way ([dependencies], [build-dependencies] and target-specific
#    ones; dev-dependencies are free): core on no keyhaven crate, store on core, service
#    on core and store, server on core, store and service. The CLI may use them all.
#    The client library depends on core, and on store and service only as optional
#    dependencies (`optional = true` on the dependency's line) that its `embedded`
#    feature names (`dep:keyhaven-store`); never on the server.
# 7. No source file under crates/*/src is longer than 600 lines.
#
# Limits, knowingly: `super` in a (non-test) inline module is read as the file's own
# `super`; macros' generated paths and `#[path]` attributes are not followed.
set -euo pipefail

die() { echo "check-layers: $*" >&2; exit 2; }

root="$(cd "$(dirname "$0")/.." && pwd)"
mode=check
while [ $# -gt 0 ]; do
  case "$1" in
    --self-test) mode=self-test ;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; root="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
  shift
done

# ---------------------------------------------------------------------------------------
# Sources: one awk run per crate reads every .rs file under src/, strips comments, strings
# and test items, collects the paths each file names, resolves them to files and applies
# rules 1-5 (the source half). Prints offences, one a line.
# ---------------------------------------------------------------------------------------
read -r -d '' SOURCE_RULES <<'AWK' || true
function modpath(f,   rel) {
  rel = substr(f, length(srcdir) + 2)
  if (rel == "lib.rs") return "crate"
  if (rel == "main.rs") return has_lib ? "" : "crate"
  sub(/\.rs$/, "", rel); sub(/\/mod$/, "", rel); gsub(/\//, "::", rel)
  return "crate::" rel
}
function parent(m,   p) {
  if (m == "crate") return "crate"
  p = m; sub(/::[^:]+$/, "", p)
  return p
}
function is_ident(c) { return c ~ /[A-Za-z0-9_]/ }
function hashes(n,   s) { s = ""; while (n-- > 0) s = s "#"; return s }

# One line without comments and string contents (state carries over lines: block
# comments nest, strings and raw strings span lines). Strings become "".
function clean(s,   out, i, n, c, j, k, word) {
  out = ""; n = length(s); i = 1
  while (i <= n) {
    c = substr(s, i, 1)
    if (blk > 0) {
      if (substr(s, i, 2) == "*/") { blk--; i += 2; continue }
      if (substr(s, i, 2) == "/*") { blk++; i += 2; continue }
      i++; continue
    }
    if (instr) {
      if (rawh >= 0) {
        if (c == "\"" && substr(s, i + 1, rawh) == hashes(rawh)) {
          instr = 0; out = out "\""; i += 1 + rawh; continue
        }
        i++; continue
      }
      if (c == "\\") { i += 2; continue }
      if (c == "\"") { instr = 0; out = out "\"" }
      i++; continue
    }
    if (substr(s, i, 2) == "//") break
    if (substr(s, i, 2) == "/*") { blk = 1; i += 2; continue }
    if (c == "\"") { instr = 1; rawh = -1; out = out "\""; i++; continue }
    if (c == "r") {
      # a raw string starts with r, br or cr as a whole token: r"..", r#".."#
      word = out; sub(/.*[^A-Za-z0-9_]/, "", word)
      if (word == "" || word == "b" || word == "c") {
        j = i + 1; while (substr(s, j, 1) == "#") j++
        if (substr(s, j, 1) == "\"") { instr = 1; rawh = j - i - 1; out = out "\""; i = j + 1; continue }
      }
    }
    if (c == "'") {
      # a char literal ('x', '\n', '\'', a multi-byte char) or a lifetime ('a)
      if (substr(s, i + 1, 1) == "\\") {
        k = index(substr(s, i + 3), "'")
        if (k > 0) { out = out "' '"; i = i + 3 + k; continue }
      } else if (substr(s, i + 2, 1) == "'") {
        out = out "' '"; i += 3; continue
      } else if (substr(s, i + 1, 1) > "~") {
        for (k = i + 1; k <= i + 5 && substr(s, k, 1) > "~"; k++) ;
        if (substr(s, k, 1) == "'") { out = out "' '"; i = k + 1; continue }
      }
    }
    out = out c; i++
  }
  return out
}

# Cleaned text of line `ln`: test items are skipped, `use` statements collected, other
# paths recorded.
function feed(t, ln,   p, c, before) {
  gsub(/pub[ \t]*\([^)]*\)/, "pub", t)   # pub(crate), pub(in crate::x): visibility, not paths
  while (t != "") {
    if (skipping) {
      for (p = 1; p <= length(t); p++) {
        c = substr(t, p, 1)
        skipbuf = skipbuf c
        if (c == "{") { sdepth++; sopened = 1 }
        else if (c == "}") { sdepth--; if (sdepth == 0 && sopened) break }
        else if (c == ";" && sdepth == 0) break
      }
      if (p > length(t)) { skipbuf = skipbuf " "; return }
      if (skipbuf ~ /^[ \t]*(#\[[^]]*\][ \t]*)*(pub[ \t]+)?mod[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*;$/) {
        sub(/;$/, "", skipbuf); sub(/.*mod[ \t]+/, "", skipbuf); sub(/[ \t]+$/, "", skipbuf)
        testmod[mod_of[FILENAME] "::" skipbuf] = 1
      }
      skipping = 0; t = substr(t, p + 1); continue
    }
    if (match(t, /#[ \t]*\[[ \t]*cfg[ \t]*\([ \t]*test[ \t]*\)[ \t]*\]/)) {
      before = substr(t, 1, RSTART - 1)
      t = substr(t, RSTART + RLENGTH)
      statements(before, ln)
      skipping = 1; sdepth = 0; sopened = 0; skipbuf = ""
      continue
    }
    statements(t, ln); return
  }
}

function statements(t, ln,   p, before) {
  while (t != "") {
    if (inuse) {
      p = index(t, ";")
      if (p == 0) { ubuf = ubuf " " t; return }
      ubuf = ubuf " " substr(t, 1, p - 1)
      end_use()
      t = substr(t, p + 1); continue
    }
    if (match(" " t " ", /[^A-Za-z0-9_]use[ \t]/)) {
      before = substr(t, 1, RSTART - 1)
      t = substr(t, RSTART + RLENGTH - 1)
      code_paths(before, ln)
      upub = (before ~ /pub[ \t]*$/)
      inuse = 1; ubuf = ""; uline = ln
      continue
    }
    code_paths(t, ln); return
  }
}

function record(path, ln, kind) {
  nocc++; occ_file[nocc] = FILENAME; occ_line[nocc] = ln; occ_path[nocc] = path; occ_kind[nocc] = kind
}

function code_paths(t, ln,   p) {
  while (match(t, /[$A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)+/)) {
    p = substr(t, RSTART, RLENGTH)
    if (substr(p, 1, 1) != "$" && (RSTART == 1 || substr(t, RSTART - 1, 1) != ":")) record(p, ln, "code")
    t = substr(t, RSTART + RLENGTH)
  }
}

function end_use(   s, i) {
  inuse = 0
  s = ubuf
  gsub(/[ \t]+as[ \t]+/, "@as@", s); gsub(/[ \t]/, "", s); sub(/^::/, "", s)
  nleaf = 0
  expand("", s)
  for (i = 1; i <= nleaf; i++) {
    record(leaf_path[i], uline, upub ? "pubuse" : "use")
    if (leaf_glob[i]) { nglob[FILENAME]++; glob[FILENAME, nglob[FILENAME]] = leaf_path[i] }
    else if (leaf_alias[i] != "_" && leaf_alias[i] != "") bind[FILENAME, leaf_alias[i]] = leaf_path[i]
  }
}

# Splits `s` at the commas outside braces.
function split_top(s, parts,   n, i, c, d, cur) {
  n = 0; d = 0; cur = ""
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (c == "{") d++
    if (c == "}") d--
    if (c == "," && d == 0) { parts[++n] = cur; cur = "" } else cur = cur c
  }
  parts[++n] = cur
  return n
}

# A use tree into its leaves: leaf_path (full path), leaf_alias (the name it binds),
# leaf_glob (a `*`).
function expand(prefix, s,   parts, n, i, part, b, inner, alias, a, base) {
  n = split_top(s, parts)
  for (i = 1; i <= n; i++) {
    part = parts[i]
    if (part == "") continue
    b = index(part, "{")
    if (b > 0) {
      inner = substr(part, b + 1); sub(/}$/, "", inner)
      expand(prefix substr(part, 1, b - 1), inner)
      continue
    }
    alias = ""
    a = index(part, "@as@")
    if (a > 0) { alias = substr(part, a + 4); part = substr(part, 1, a - 1) }
    base = prefix part; sub(/:*[^:]*$/, "", base)   # the path without its last name
    nleaf++; leaf_glob[nleaf] = 0
    if (part ~ /(^|::)\*$/) { leaf_path[nleaf] = base; leaf_glob[nleaf] = 1; alias = "_" }
    else if (part ~ /(^|::)self$/) leaf_path[nleaf] = base
    else leaf_path[nleaf] = prefix part
    if (alias == "") { alias = leaf_path[nleaf]; sub(/.*::/, "", alias) }
    leaf_alias[nleaf] = alias
  }
}

# Where `path`, named in file f, leads: "I:<module>" (a file of this crate), or
# "E:<path>" (another crate, or an item this check does not follow).
function resolve(f, path, depth,   segs, n, i, first, m, abs, rest, r, g) {
  if (depth > 8) return "E:" path
  n = split(path, segs, "::")
  m = mod_of[f]; first = segs[1]
  if (first == "crate") { abs = "crate"; i = 2 }
  else if (first == "super" || first == "self") {
    abs = m; i = 1
    while (i <= n && (segs[i] == "super" || segs[i] == "self")) {
      if (segs[i] == "super") abs = parent(abs)
      i++
    }
  } else if ((f SUBSEP first) in bind && bind[f, first] != path) {
    rest = path; sub(/^[^:]+/, "", rest)
    return resolve(f, bind[f, first] rest, depth + 1)
  } else if ((m "::" first) in file_of) { abs = m; i = 1 }
  else {
    abs = ""
    for (g = 1; g <= nglob[f]; g++) {
      r = resolve(f, glob[f, g], depth + 1)
      if (r ~ /^I:/ && ((substr(r, 3) "::" first) in file_of)) { abs = substr(r, 3); i = 1; break }
    }
    if (abs == "") return "E:" path
  }
  for (; i <= n; i++) {
    if ((abs "::" segs[i]) in file_of) abs = abs "::" segs[i]
    else break
  }
  return "I:" abs
}

function excluded(m,   p) {
  for (p = m; ; p = parent(p)) {
    if (p in testmod) return 1
    if (p == "crate") return 0
  }
}
function ancestor(a, d) { return a == "crate" || index(d, a "::") == 1 }
function route_of(m,   r) {
  if (index(m, "crate::routes::") != 1) return ""
  r = substr(m, length("crate::routes::") + 1); sub(/::.*/, "", r)
  return r
}
function say(f, ln, msg) {
  if (seen[f, ln, msg]++) return
  printf "%s:%d: %s\n", f, ln, msg
}
# One offence per file and `what` (a module named, a route file imported): the first
# line, and every path that names it, in `head (paths)tail`.
function note(f, ln, what, head, tail, path,   k) {
  k = f SUBSEP what
  if (!(k in nhead)) {
    norder[++nnote] = k; nfile[k] = f; nline[k] = ln; nhead[k] = head; ntail[k] = tail
    npaths[k] = path
  } else if (index(", " npaths[k] ", ", ", " path ", ") == 0) npaths[k] = npaths[k] ", " path
}
function shown(kind, path) { return (kind == "code" ? "" : "use ") path }

BEGIN {
  for (i = 1; i < ARGC; i++) if (ARGV[i] == srcdir "/lib.rs") has_lib = 1
  for (i = 1; i < ARGC; i++) {
    m = modpath(ARGV[i])
    if (m == "") { ARGV[i] = ""; continue }
    mod_of[ARGV[i]] = m; file_of[m] = ARGV[i]
  }
}
FNR == 1 { blk = 0; instr = 0; skipping = 0; inuse = 0 }
{ feed(clean($0), FNR) }

END {
  nedge = 0
  for (k = 1; k <= nocc; k++) {
    f = occ_file[k]; ln = occ_line[k]; path = occ_path[k]; kind = occ_kind[k]
    fm = mod_of[f]
    if (excluded(fm)) continue
    r = resolve(f, path, 0)
    if (r ~ /^E:/) {
      p = substr(r, 3)
      if (crate == "cli" && p ~ /^keyhaven_server::/) {
        s = p; sub(/^keyhaven_server::/, "", s); sub(/::.*/, "", s)
        if (s !~ /^(serve|router|AppState|shutdown_signal|Config|app)$/)
          note(f, ln, "server:" s, "the CLI names keyhaven_server::" s, "; it may use only the app builder: serve, router, AppState, shutdown_signal, Config, app", shown(kind, path))
      }
      if (crate == "service" && p ~ /^(axum|axum_[a-z_]+|hyper|hyper_util|tower|tower_http)(::|$)/) {
        s = p; sub(/::.*/, "", s)
        note(f, ln, "http:" s, "the service crate names " s, "; it must stay free of HTTP", shown(kind, path))
      }
      continue
    }
    tm = substr(r, 3); t = file_of[tm]
    if (t == f || excluded(tm)) continue
    if (crate == "server") {
      if (route_of(tm) != "" || tm == "crate::routes") {
        if (fm != "crate::routes" && route_of(fm) == "" && fm != "crate::app" && fm != "crate::openapi")
          note(f, ln, "routes:" t, "imports " t, ": only the router (app.rs) and openapi.rs may import route modules", shown(kind, path))
      }
      if (route_of(fm) != "" && route_of(tm) != "" && route_of(fm) != route_of(tm))
        note(f, ln, "route:" t, "route module imports another route module " t, "; shared code belongs in routes/mod.rs or a layer down", shown(kind, path))
    }
    if (kind == "pubuse" && ancestor(fm, tm)) continue
    # A module and its descendants are one unit: a child naming its ancestor's items
    # (`super::Engine`) is not an edge of the module graph.
    if (ancestor(tm, fm)) continue
    if (!((f SUBSEP t) in edge)) {
      edge[f, t] = ln ": " shown(kind, path)
      adj[f] = adj[f] " " t
      if (!(f in node)) { node[f] = 1; nodes[++nnode] = f }
    }
  }
  for (j = 1; j <= nnote; j++) {
    k = norder[j]
    printf "%s:%d: %s (%s)%s\n", nfile[k], nline[k], nhead[k], npaths[k], ntail[k]
  }
  # cycles of two
  for (a = 1; a <= nnode; a++) {
    fa = nodes[a]; n = split(adj[fa], out, " ")
    for (j = 1; j <= n; j++) {
      fb = out[j]
      if (fa < fb && ((fb SUBSEP fa) in edge)) {
        say(fa, edge[fa, fb] + 0, "module cycle: " fa " <-> " fb)
        printf "    %s:%s\n    %s:%s\n", fa, edge[fa, fb], fb, edge[fb, fa]
        in2[fa] = 1; in2[fb] = 1
      }
    }
  }
  # for each module, its shortest longer cycle (breadth-first back to itself)
  for (a = 1; a <= nnode; a++) {
    start = nodes[a]
    split("", prev); split("", queue)
    qh = 1; qt = 0; found = ""
    n = split(adj[start], out, " ")
    for (j = 1; j <= n; j++) if (!(out[j] in prev)) { prev[out[j]] = start; queue[++qt] = out[j] }
    while (qh <= qt && found == "") {
      u = queue[qh++]
      n = split(adj[u], out, " ")
      for (j = 1; j <= n; j++) {
        v = out[j]
        if (v == start) { found = u; break }
        if (!(v in prev)) { prev[v] = u; queue[++qt] = v }
      }
    }
    if (found == "") continue
    chain = ""; len = 1
    for (u = found; u != start; u = prev[u]) { chain = u " " chain; len++ }
    if (len <= 2) continue
    chain = start " " chain
    n = split(chain, cyc, " "); split("", sorted)
    for (j = 1; j <= n; j++) sorted[j] = cyc[j]
    for (x = 2; x <= n; x++) for (y = x; y > 1 && sorted[y - 1] > sorted[y]; y--) { tmp = sorted[y]; sorted[y] = sorted[y - 1]; sorted[y - 1] = tmp }
    key = ""; for (j = 1; j <= n; j++) key = key " " sorted[j]
    if (key in cycle_seen) continue
    cycle_seen[key] = 1
    # chain is start ... found, in order; print it from its first file
    line = start; for (j = 2; j <= n; j++) line = line " -> " cyc[j]
    say(start, edge[start, cyc[2]] + 0, "module cycle: " line " -> " start)
    for (j = 1; j <= n; j++) {
      nx = (j < n) ? cyc[j + 1] : start
      printf "    %s:%s\n", cyc[j], edge[cyc[j], nx]
    }
  }
}
AWK

check_sources() {
  local crate="$1" srcdir="crates/$1/src"
  [ -d "$srcdir" ] || return 0
  local files
  # src/bin/ holds other binaries' roots, which this check does not model
  mapfile -t files < <(find "$srcdir" -name '*.rs' -type f -not -path "$srcdir/bin/*" | LC_ALL=C sort)
  [ "${#files[@]}" -gt 0 ] || return 0
  LC_ALL=C awk -v crate="$crate" -v srcdir="$srcdir" "$SOURCE_RULES" "${files[@]}"
}

# ---------------------------------------------------------------------------------------
# Manifests: the dependency names of each section of a Cargo.toml, as
# `section<TAB>name<TAB>line` (rules 5 and 6).
# ---------------------------------------------------------------------------------------
dependencies() {
  LC_ALL=C awk '
    /^[ \t]*\[/ {
      section = $0; gsub(/[ \t\[\]]/, "", section)
      if (section ~ /(^|\.)(dependencies|dev-dependencies|build-dependencies)\.[A-Za-z0-9_-]+$/) {
        name = section; sub(/.*\./, "", name); sub(/\.[^.]+$/, "", section)
        print section "\t" name "\t" NR
        section = "-"
      }
      next
    }
    section ~ /(^|\.)(dependencies|dev-dependencies|build-dependencies)$/ && /^[ \t]*[A-Za-z0-9_-]+[ \t]*[=.]/ {
      name = $0; sub(/^[ \t]*/, "", name); sub(/[ \t]*[=.].*/, "", name)
      pkg = name
      if (match($0, /package[ \t]*=[ \t]*"[^"]+"/)) {
        pkg = substr($0, RSTART, RLENGTH); sub(/^package[ \t]*=[ \t]*"/, "", pkg); sub(/"$/, "", pkg)
      }
      print section "\t" pkg "\t" NR "\t" ($0 ~ /optional[ \t]*=[ \t]*true/ ? "optional" : "-")
    }' "$1"
}

allowed_keyhaven_deps() {
  case "$1" in
    core) echo "" ;;
    store) echo "core" ;;
    service) echo "core store" ;;
    server) echo "core store service" ;;
    client) echo "core" ;;
    *) echo "*" ;;
  esac
}

check_manifest() {
  local crate="$1" manifest="crates/$1/Cargo.toml" allowed section name line dep
  [ -f "$manifest" ] || return 0
  allowed="$(allowed_keyhaven_deps "$crate")"
  # The client's `embedded` feature line: the optional crates it may depend on.
  local embedded=""
  if [ "$crate" = client ]; then
    embedded="$(awk '/^[ \t]*\[/ { f = ($0 ~ /^[ \t]*\[features\]/) } f && /^[ \t]*embedded[ \t]*=/' "$manifest")"
  fi
  local optional
  while IFS=$'\t' read -r section name line optional; do
    if [ "$crate" = service ] && [[ "$name" =~ ^(axum(-.*)?|hyper|hyper-util|tower|tower-http)$ ]]; then
      echo "$manifest:$line: the service crate depends on $name ([$section]); it must stay free of HTTP"
    fi
    case "$section" in *dev-dependencies) continue ;; esac
    if [[ "$name" == keyhaven-* ]] && [ "$allowed" != "*" ]; then
      dep="${name#keyhaven-}"
      if [ "$crate" = client ] && [[ "$dep" =~ ^(store|service)$ ]]; then
        if [ "$optional" != optional ] || [[ "$embedded" != *"\"dep:$name\""* ]]; then
          echo "$manifest:$line: client depends on $name ([$section]) other than as an optional dependency of its \`embedded\` feature"
        fi
      elif [[ " $allowed " != *" $dep "* ]]; then
        echo "$manifest:$line: $crate depends on $name ([$section]); $crate may depend on ${allowed:-no keyhaven crate}"
      fi
    fi
  done < <(dependencies "$manifest")
}

# Rule 7: no source file longer than MAX_LINES (tests under crates/*/tests are free).
MAX_LINES=600
check_sizes() {
  local f n
  while IFS= read -r f; do
    n="$(wc -l <"$f")"
    if [ "$n" -gt "$MAX_LINES" ]; then
      echo "$f:$n: $n lines; split it by what it holds (at most $MAX_LINES)"
    fi
  done < <(find "crates/$1/src" -name '*.rs' 2>/dev/null | sort)
}

check_tree() {
  local crate found=0 out
  cd "$1"
  [ -d crates ] || die "no crates/ directory in $1"
  for dir in crates/*/; do
    crate="$(basename "$dir")"
    out="$(check_sources "$crate"; check_manifest "$crate"; check_sizes "$crate")"
    if [ -n "$out" ]; then
      printf '%s\n' "$out"
      found=$((found + $(grep -c '^[^ ]' <<<"$out")))
    fi
  done
  if [ "$found" -gt 0 ]; then
    echo "check-layers: FAIL ($found offence(s); the rules are in the header of scripts/check-layers.sh)"
    return 1
  fi
  echo "check-layers: PASS"
}

# ---------------------------------------------------------------------------------------
# Self-test: a fixture tree with one offence of each kind, which must all be reported,
# and the same tree with the offences removed, which must pass.
# ---------------------------------------------------------------------------------------
fixture() {
  local t="$1" clean="$2"
  mkdir -p "$t"/crates/{core,store,service,server,cli}/src "$t"/crates/server/src/routes \
    "$t"/crates/core/src/keys
  manifest() { printf '[package]\nname = "%s"\n\n[dependencies]\n%s\n[dev-dependencies]\n%s\n' "$@"; }
  manifest keyhaven-core 'serde = "1"' 'keyhaven-store.workspace = true' >"$t/crates/core/Cargo.toml"
  if [ "$clean" = 1 ]; then
    manifest keyhaven-store 'keyhaven-core.workspace = true' '' >"$t/crates/store/Cargo.toml"
    manifest keyhaven-service $'keyhaven-core.workspace = true\nkeyhaven-store = { workspace = true }' \
      'tempfile = "3"' >"$t/crates/service/Cargo.toml"
  else
    manifest keyhaven-store $'keyhaven-core.workspace = true\nkeyhaven-service.workspace = true' '' \
      >"$t/crates/store/Cargo.toml"
    manifest keyhaven-service $'keyhaven-core.workspace = true\ntower-http = "0.6"' 'axum = "0.8"' \
      >"$t/crates/service/Cargo.toml"
  fi
  manifest keyhaven-server $'keyhaven-service.workspace = true\naxum = "0.8"' '' >"$t/crates/server/Cargo.toml"
  manifest keyhaven $'keyhaven-server.workspace = true\nkeyhaven-core.workspace = true' '' \
    >"$t/crates/cli/Cargo.toml"
  # client: core, and store/service only as optional dependencies of `embedded`
  mkdir -p "$t/crates/client"
  if [ "$clean" = 1 ]; then
    printf '%s\n' '[package]' 'name = "keyhaven-client"' '' '[features]' \
      'embedded = ["dep:keyhaven-service", "dep:keyhaven-store"]' '' '[dependencies]' \
      'keyhaven-core = { path = "../core" }' \
      'keyhaven-service = { path = "../service", optional = true }' \
      'keyhaven-store = { path = "../store", optional = true }' '' '[dev-dependencies]' \
      'keyhaven-server.workspace = true' >"$t/crates/client/Cargo.toml"
  else
    printf '%s\n' '[package]' 'name = "keyhaven-client"' '' '[features]' \
      'embedded = ["dep:keyhaven-service"]' '' '[dependencies]' \
      'keyhaven-core = { path = "../core" }' \
      'keyhaven-service = { path = "../service", optional = true }' \
      'keyhaven-store = { path = "../store", optional = true }' \
      'keyhaven-server.workspace = true' >"$t/crates/client/Cargo.toml"
  fi

  # core: a -> b -> a (two), c -> d -> e -> c (three); keys/mod.rs calling its child
  # and the child using super:: is fine (one unit), while two children naming each
  # other (keys/change.rs <-> keys/read.rs) is a cycle. Test code, comments and strings
  # never count.
  cat >"$t/crates/core/src/lib.rs" <<'EOF'
//! Root. `crate::a::X` in a doc comment is no import.
pub mod a;
pub mod b;
pub mod c;
pub mod d;
pub mod e;
pub mod keys;
pub use a::X;
#[cfg(test)]
mod tests;
EOF
  cat >"$t/crates/core/src/tests.rs" <<'EOF'
use crate::b::Y;
EOF
  if [ "$clean" = 1 ]; then
    printf 'pub struct X;\n' >"$t/crates/core/src/a.rs"
  else
    printf 'use crate::b::Y;\npub struct X;\n' >"$t/crates/core/src/a.rs"
  fi
  cat >"$t/crates/core/src/b.rs" <<'EOF'
use super::{a::{self, X as Ex}};
pub struct Y;
pub fn f() -> &'static str { let _c = '"'; "crate::c::Z" }
/* crate::c::Z /* nested */ crate::d::W */
#[cfg(test)]
mod tests {
    use crate::c::Z;
}
EOF
  printf 'pub struct Z;\npub fn g() { crate::d::w(); }\n' >"$t/crates/core/src/c.rs"
  if [ "$clean" = 0 ]; then
    for _ in $(seq 610); do echo '// filler'; done >>"$t/crates/core/src/c.rs"
  fi
  printf 'pub fn w() { super::e::v(); }\n' >"$t/crates/core/src/d.rs"
  if [ "$clean" = 1 ]; then
    printf 'pub fn v() {}\n' >"$t/crates/core/src/e.rs"
  else
    printf 'use crate::*;\npub fn v() { c::g(); }\n' >"$t/crates/core/src/e.rs"
  fi
  printf 'mod change;\nmod read;\nuse change::revoke;\npub(crate) fn find() { revoke() }\n' \
    >"$t/crates/core/src/keys/mod.rs"
  printf 'pub fn revoke() { super::find() }\n' >"$t/crates/core/src/keys/change.rs"
  if [ "$clean" = 1 ]; then
    printf 'pub fn list() {}\n' >"$t/crates/core/src/keys/read.rs"
  else
    printf 'pub fn list() {}\npub fn get() { super::change::revoke() }\n' >"$t/crates/core/src/keys/read.rs"
    printf 'pub fn revoke() { super::find(); super::read::list() }\n' >"$t/crates/core/src/keys/change.rs"
  fi

  # server: routes, the router, openapi, and an error module
  printf 'pub mod app;\npub mod error;\npub mod openapi;\npub mod routes;\npub use app::{router, serve};\n' \
    >"$t/crates/server/src/lib.rs"
  printf 'use crate::routes::{keys, keyspaces};\npub fn router() { keys::create(); keyspaces::list(); }\npub fn serve() {}\n' \
    >"$t/crates/server/src/app.rs"
  printf 'pub fn doc() { crate::routes::keys::create(); }\n' >"$t/crates/server/src/openapi.rs"
  printf 'pub mod keys;\npub mod keyspaces;\npub struct Page;\n' >"$t/crates/server/src/routes/mod.rs"
  printf 'use axum::Json;\nuse super::Page;\npub fn list() {}\n' >"$t/crates/server/src/routes/keyspaces.rs"
  if [ "$clean" = 1 ]; then
    printf 'pub struct Problem;\n' >"$t/crates/server/src/error.rs"
    printf 'use crate::routes::Page;\npub fn create() {}\n' >"$t/crates/server/src/routes/keys.rs"
  else
    printf 'use crate::routes::Page;\npub struct Problem;\n' >"$t/crates/server/src/error.rs"
    printf 'use super::*;\npub fn create() { keyspaces::list() }\n' >"$t/crates/server/src/routes/keys.rs"
  fi

  # service: no HTTP
  if [ "$clean" = 1 ]; then
    printf 'pub fn op() {}\n' >"$t/crates/service/src/lib.rs"
  else
    printf 'use tower::Service;\npub fn op() { let _ = axum::http::StatusCode::OK; }\n' \
      >"$t/crates/service/src/lib.rs"
  fi

  # cli: the app builder only
  cat >"$t/crates/cli/src/main.rs" <<'EOF'
fn main() { keyhaven::run() }
EOF
  if [ "$clean" = 1 ]; then
    printf 'use keyhaven_server::{serve, AppState as State};\npub fn run() { keyhaven_server::router(); }\n' \
      >"$t/crates/cli/src/lib.rs"
  else
    printf 'use keyhaven_server::{serve, routes::keys};\nuse keyhaven_server as ks;\npub fn run() { ks::error::Problem; }\n' \
      >"$t/crates/cli/src/lib.rs"
  fi
}

self_test() {
  local tmp out bad_out rc fails=0
  tmp="$(mktemp -d)"
  trap "rm -rf '$tmp'" EXIT
  expect() {
    if ! grep -qF -- "$1" <<<"$out"; then
      echo "self-test: expected to find: $1"; fails=$((fails + 1))
    fi
  }
  reject() {
    if grep -qF -- "$1" <<<"$out"; then
      echo "self-test: expected NOT to find: $1"; fails=$((fails + 1))
    fi
  }
  fixture "$tmp/bad" 0
  rc=0; out="$(bash "$0" --root "$tmp/bad" 2>&1)" || rc=$?
  [ "$rc" = 1 ] || { echo "self-test: the bad tree exited $rc, expected 1"; fails=$((fails + 1)); }
  expect "crates/core/src/a.rs:1: module cycle: crates/core/src/a.rs <-> crates/core/src/b.rs"
  expect "module cycle: crates/core/src/c.rs -> crates/core/src/d.rs -> crates/core/src/e.rs -> crates/core/src/c.rs"
  reject "module cycle: crates/core/src/keys/change.rs <-> crates/core/src/keys/mod.rs"
  expect "module cycle: crates/core/src/keys/change.rs <-> crates/core/src/keys/read.rs"
  expect "crates/server/src/error.rs:1: imports crates/server/src/routes/mod.rs (use crate::routes::Page): only the router"
  expect "crates/server/src/routes/keys.rs:2: route module imports another route module crates/server/src/routes/keyspaces.rs (keyspaces::list)"
  expect "crates/cli/src/lib.rs:1: the CLI names keyhaven_server::routes (use keyhaven_server::routes::keys)"
  expect "crates/cli/src/lib.rs:3: the CLI names keyhaven_server::error (ks::error::Problem)"
  expect "crates/service/src/lib.rs:1: the service crate names tower (use tower::Service)"
  expect "crates/service/src/lib.rs:2: the service crate names axum (axum::http::StatusCode::OK)"
  expect "crates/service/Cargo.toml:6: the service crate depends on tower-http ([dependencies])"
  expect "crates/service/Cargo.toml:8: the service crate depends on axum ([dev-dependencies])"
  expect "crates/store/Cargo.toml:6: store depends on keyhaven-service ([dependencies]); store may depend on core"
  reject "crates/core/src/b.rs:4"   # a comment
  reject "crates/core/src/b.rs:3"   # a string
  reject "crates/core/src/b.rs:7"   # a test module
  reject "crates/core/src/tests.rs" # a #[cfg(test)] file
  reject "crates/core/Cargo.toml"   # dev-dependencies are free
  reject "crates/server/src/openapi.rs:"
  reject "crates/server/src/app.rs:"
  expect "crates/core/src/c.rs:612: 612 lines"
  expect "crates/client/Cargo.toml:10: client depends on keyhaven-store ([dependencies]) other than as an optional dependency of its \`embedded\` feature"
  expect "crates/client/Cargo.toml:11: client depends on keyhaven-server ([dependencies]); client may depend on core"
  reject "crates/client/Cargo.toml:9"
  expect "check-layers: FAIL (15 offence(s)"
  bad_out="$out"

  fixture "$tmp/good" 1
  rc=0; out="$(bash "$0" --root "$tmp/good" 2>&1)" || rc=$?
  [ "$rc" = 0 ] || { echo "self-test: the clean tree exited $rc, expected 0:"; echo "$out"; fails=$((fails + 1)); }

  if [ "$fails" -gt 0 ]; then
    printf 'what it printed for the fixture with offences:\n%s\n' "$bad_out"
    echo "check-layers self-test: FAIL ($fails)"
    return 1
  fi
  echo "check-layers self-test: PASS"
}

case "$mode" in
  self-test) self_test ;;
  check) check_tree "$root" ;;
esac
