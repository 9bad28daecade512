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
# One clang-format over every file (a process per file costs thirty times
# more); each file it would change is named in its "code should be
# clang-formatted" errors.
files=()
while IFS= read -r f; do
    [ -f "$f" ] && files+=("$f")
done < <(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build/*')
n=${#files[@]}
if [ "$n" -eq 0 ]; then
    t_fail "C files found" "no .c or .h file in $T_ROOT"
    t_summary
    exit 1
fi
report=$(clang-format --dry-run -Werror "${files[@]}" 2>&1)
rc=$?
mapfile -t unformatted < <(printf '%s\n' "$report" | sed -n -E 's/^(.*):[0-9]+:[0-9]+: error: code should be clang-formatted.*/\1/p' | sort -u)
if [ $rc -ne 0 ] && [ ${#unformatted[@]} -eq 0 ]; then
    t_fail "clang-format runs" "$(printf '%s' "$report" | head -n 3)"
    t_summary
    exit 1
fi
if [ ${#unformatted[@]} -eq 0 ]; then
    t_pass "$n C files conform to .clang-format"
else
    for f in "${unformatted[@]}"; do echo "    not formatted: $f"; done
    t_fail "C files conform to .clang-format" "${#unformatted[@]} of $n do not (listed above; clang-format -i FILE)"
fi
t_summary
