#!/usr/bin/env bash
T_SUITE=format
# The tree keeps one C style: every tracked .c and .h file is as
# clang-format (with the repository's .clang-format) would write it.
# To mend: clang-format -i FILE.
. "$(dirname "$0")/../lib.sh"
cd "$T_ROOT" || exit 1

if ! command -v clang-format >/dev/null 2>&1; then
    t_fail "clang-format is installed" "make deps installs it"
    t_summary
    exit 1
fi
unformatted=()
n=0
while IFS= read -r f; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
done < <(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build/*')
if [ ${#unformatted[@]} -eq 0 ]; then
    t_pass "$n C files conform to .clang-format"
else
    for f in "${unformatted[@]}"; do echo "    not formatted: $f"; done
    t_fail "C files conform to .clang-format" "${#unformatted[@]} of $n do not (listed above; clang-format -i FILE)"
fi
t_summary
