#!/usr/bin/env bash
# The longest functions of each source folder, by lines from signature to closing brace, as Universal Ctags
# sees them (a lambda counts as part of the function it is written in). For reviews of the control code:
#   scripts/function-lengths.sh [REV] [-n N]
# REV (default: the working tree) is read with `git archive`, so a past commit can be measured the same way.
# Prints, per folder under collector/, bench/ and tests/, the N longest (default 1): lines, function, place.
set -euo pipefail
cd "$(dirname "$0")/.."

rev=""
top=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n) top="$2"; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) rev="$1"; shift ;;
  esac
done
command -v ctags >/dev/null || { echo "function-lengths: needs Universal Ctags (apt-get install universal-ctags)" >&2; exit 1; }

tree="."
if [[ -n "$rev" ]]; then
  tree="$(mktemp -d)"
  trap 'rm -rf "$tree"' EXIT
  git archive "$rev" collector bench tests | tar -x -C "$tree"
fi

(cd "$tree" && find collector bench tests -name '*.cpp' -o -name '*.hpp' -o -name '*.h' | sort |
  xargs ctags --languages=C++ --language-force=C++ --c++-kinds=f --fields=+ne -o - 2>/dev/null) |
  awk -F'\t' -v top="$top" '
    $1 ~ /^__anon/ { next }                       # lambdas: part of their enclosing function
    {
      line = ""; end = "";
      for (i = 4; i <= NF; i++) {
        if ($i ~ /^line:/) line = substr($i, 6);
        if ($i ~ /^end:/) end = substr($i, 5);
      }
      if (line == "" || end == "") next;
      n = split($2, parts, "/"); folder = parts[1];
      for (i = 2; i < n; i++) folder = folder "/" parts[i];
      print folder "\t" (end - line + 1) "\t" $1 "\t" $2 ":" line;
    }' |
  sort -t$'\t' -k1,1 -k2,2nr |
  awk -F'\t' -v top="$top" '
    $1 != folder { folder = $1; shown = 0 }
    shown < top { printf "%-22s %5d  %s  (%s)\n", $1, $2, $3, $4; shown++ }'
