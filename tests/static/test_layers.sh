#!/usr/bin/env bash
T_SUITE=layers
# The layers hold: every #include "..." in the programs' sources names a
# header of the file's own folder or of a folder below it
# (docs/ARCHITECTURE.md), and from another program only that program's
# public header. Prints each offending line as FILE:LINE: #include "X".
. "$(dirname "$0")/../lib.sh"
cd "$T_ROOT" || exit 1

# What each folder may include besides itself.
declare -A BELOW=(
    [api]=""
    [runtime]="api"
    [store]="api runtime"
    [relay]="api runtime store"
    [kme]="api runtime store relay"
    [sae-client]="api runtime"
    [encryptor]="api runtime sae-client"
    [qkd-sim]="api runtime"
)
# A program's headers that another folder may include: its public ones.
declare -A PUBLIC=(
    [sae-client]="sae-client/sae_client.h sae-client/wipe_buf.h"
)

# allowed FOLDER HEADER: 0 when FOLDER may include HEADER.
allowed() {
    local folder=$1 header=$2 target=${2%%/*} b
    [ "$target" = "$folder" ] && return 0
    for b in ${BELOW[$folder]}; do
        [ "$b" = "$target" ] || continue
        [ -z "${PUBLIC[$b]:-}" ] && return 0
        case " ${PUBLIC[$b]} " in *" $header "*) return 0 ;; esac
        return 1
    done
    return 1
}

bad=()
checked=0
for folder in "${!BELOW[@]}"; do
    for f in "$folder"/*.c "$folder"/*.h; do
        [ -f "$f" ] || continue
        while IFS=: read -r line text; do
            header=$(printf '%s' "$text" | sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/')
            checked=$((checked + 1))
            allowed "$folder" "$header" || bad+=("$f:$line: $text")
        done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f")
    done
done

if [ ${#bad[@]} -eq 0 ]; then
    t_pass "$checked includes, none goes up a layer or into another program's internals"
else
    for b in "${bad[@]}"; do echo "    $b"; done
    t_fail "includes that go up a layer or into another program's internals" "${#bad[@]} of $checked (listed above)"
fi
# Every source folder of a program is one of the layers above.
for d in */; do
    d=${d%/}
    ls "$d"/*.c >/dev/null 2>&1 || continue
    case " ${!BELOW[*]} " in
        *" $d "*) ;;
        *) t_fail "folder $d has C sources but no place among the layers" "add it to this check and to docs/ARCHITECTURE.md" ;;
    esac
done
t_pass "every folder with C sources has a place among the layers"
t_summary
