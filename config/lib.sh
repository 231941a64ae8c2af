# Shell helpers shared by config/install.sh and config/network/install-network.sh (sourced, not run).
# Each script sets, before sourcing: ME (its name, for errors) and DESTDIR (staging root, may be empty);
# install-network.sh also DRY=1 for --dry-run. `changes` counts what a run changed ("nothing to do" when 0).
# shellcheck shell=bash

changes=${changes:-0}

say() { printf '  %s\n' "$*"; }
did() { say "$*"; changes=$((changes + 1)); }
die() { printf '%s: %s\n' "$ME" "$*" >&2; exit 1; }
staged() { [ -n "$DESTDIR" ]; }
dry() { [ "${DRY:-0}" = 1 ]; }

# install_file SOURCE TARGET MODE: copies when the content or the mode differ (returns 1 when unchanged);
# root-owned on a real install; under --dry-run only says what it would do.
install_file() {
    local src=$1 target=$2 mode=$3 path=$DESTDIR$2
    if [ -f "$path" ] && cmp -s "$src" "$path" && [ "$(stat -c %a "$path")" = "${mode#0}" ]; then
        say "unchanged $target"
        return 1
    fi
    local verb=installed
    [ -f "$path" ] && verb=updated
    if dry; then
        say "would have $verb $target (mode $mode)"
        return 0
    fi
    local dir=${path%/*}
    [ -d "$dir" ] || install -d -m 0755 "$dir"
    if staged; then
        install -m "$mode" "$src" "$path"
    else
        install -o root -g root -m "$mode" "$src" "$path"
    fi
    did "$verb $target (mode $mode)"
}

# missing_packages PACKAGE...: prints the Debian packages among them that are not installed (dpkg-query).
missing_packages() {
    local p missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    printf '%s' "${missing# }"
}
