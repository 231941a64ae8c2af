#!/bin/bash
# Installs stackcue on a Raspberry Pi (Debian 12 / Raspberry Pi OS bookworm), or removes it.
# Driven by `sudo make install` / `sudo make uninstall`; every step checks before it acts, so a second
# run changes nothing and says so. Environment:
#   DESTDIR    staging root: files land under it; apt, users and systemctl are only reported (tests)
#   PREFIX     where the program goes (default /opt/stackcue): PREFIX/venv holds the package
#   PYTHON     interpreter that makes the venv (default python3)
#   WHEEL_DIR  where the wheel is built (default a temporary directory, removed afterwards)
#   PURGE=1    uninstall also removes the configuration (/etc/stackcue), the logbook (/var/lib/stackcue)
#              and the stackcue user
set -euo pipefail

ACTION=${1:-}
DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
PREFIX=${PREFIX:-/opt/stackcue}
PREFIX=${PREFIX%/}
PYTHON=${PYTHON:-python3}
PURGE=${PURGE:-}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

USER_NAME=stackcue
# i2c: /dev/i2c-1 (MPU-6050s); bluetooth: BlueZ over D-Bus (BLE sensors); gpio, audio: buzzer, earbuds.
GROUPS_EXTRA="i2c gpio bluetooth audio"
# What the live service needs from Debian: the venv, a compiler and headers for vqf (no wheel for the
# Pi's arm64), the broker, the speech of the cues, BlueZ for BLE sensors.
APT_PACKAGES="python3 python3-venv python3-dev g++ mosquitto espeak-ng alsa-utils bluez"
UNITS="stackcue.service stackcue-cue.service"
ETC=/etc/stackcue
STATE=/var/lib/stackcue
UNIT_DIR=/etc/systemd/system
VENV=$PREFIX/venv
STAMP=$PREFIX/installed-wheel   # the installed wheel's name and the hash of its file list (RECORD)

changes=0
units_changed=0
package_changed=0

ME=install.sh
# say, did, die, staged, install_file, missing_packages (shared with config/network/install-network.sh)
# shellcheck source=config/lib.sh
. "$SRC/config/lib.sh"
systemd_running() { ! staged && [ -d /run/systemd/system ]; }

case "$PREFIX" in
    /?*) ;;
    *) die "PREFIX must be an absolute path other than / (got '$PREFIX')" ;;
esac
if ! staged && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo make $ACTION), or stage into a directory with DESTDIR=..."
fi

# ensure_dir PATH MODE OWNER:GROUP - creates or corrects a directory; ownership only on a real install.
ensure_dir() {
    local path=$DESTDIR$1 mode=$2 owner=$3
    if [ ! -d "$path" ]; then
        install -d -m "$mode" "$path"
        did "created $1 (mode $mode)"
    elif [ "$(stat -c %a "$path")" != "${mode#0}" ]; then
        chmod "$mode" "$path"
        did "set $1 to mode $mode"
    fi
    set_owner "$1" "$owner"
}

set_owner() {
    local path=$DESTDIR$1 owner=$2
    staged && return 0
    if [ "$(stat -c %U:%G "$path")" != "$owner" ]; then
        chown "$owner" "$path"
        did "set the owner of $1 to $owner"
    fi
}

apt_packages() {
    if staged; then
        say "skipped Debian packages (DESTDIR set); a real install checks: $APT_PACKAGES"
        return
    fi
    if ! command -v dpkg-query >/dev/null; then
        say "not Debian (no dpkg-query): install by hand: $APT_PACKAGES"
        return
    fi
    local missing
    missing=$(missing_packages $APT_PACKAGES)
    if [ -z "$missing" ]; then
        say "Debian packages present:$(printf ' %s' $APT_PACKAGES)"
        return
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
    did "installed Debian packages: $missing"
}

user_and_groups() {
    local g
    if staged; then
        say "skipped the system user (DESTDIR set); a real install makes user $USER_NAME (home $STATE," \
            "no login) in groups $GROUPS_EXTRA"
        return
    fi
    for g in $GROUPS_EXTRA; do
        # systemd refuses to start a unit whose SupplementaryGroups= names a missing group
        if ! getent group "$g" >/dev/null; then
            groupadd --system "$g"
            did "created system group $g"
        fi
    done
    if ! getent passwd "$USER_NAME" >/dev/null; then
        useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
        did "created system user $USER_NAME"
    fi
    local have
    have=" $(id -nG "$USER_NAME") "
    for g in $GROUPS_EXTRA; do
        if [[ $have != *" $g "* ]]; then
            usermod -a -G "$g" "$USER_NAME"
            did "added $USER_NAME to group $g"
        fi
    done
}

# The wheel is built from a copy of the package's folders: a stale build/lib in the clone can carry
# deleted modules into the wheel, and a root-owned build/ would be left in the runner's clone.
build_wheel() {
    local src_copy=$WORK/src d
    mkdir -p "$src_copy" "$WHEEL_DIR"
    cp "$SRC/pyproject.toml" "$SRC/README.md" "$src_copy/"
    # the folders pyproject maps into the stackcue namespace ([tool.setuptools.package-dir])
    for d in $("$DESTDIR$VENV/bin/python" -c '
import sys, tomllib
dirs = tomllib.load(open(sys.argv[1], "rb"))["tool"]["setuptools"]["package-dir"].values()
print(" ".join(sorted({d.split("/")[0] for d in dirs})))' "$SRC/pyproject.toml"); do
        cp -r "$SRC/$d" "$src_copy/$d"
    done
    find "$src_copy" -name __pycache__ -prune -exec rm -rf {} +
    rm -f "$WHEEL_DIR"/stackcue-*.whl
    "$DESTDIR$VENV/bin/python" -m pip wheel --no-deps -q -w "$WHEEL_DIR" "$src_copy" >/dev/null
    WHEEL=$(ls "$WHEEL_DIR"/stackcue-*.whl)
    say "built $(basename "$WHEEL")"
}

wheel_stamp() {
    # the file list with each file's hash: equal for the same sources, whatever the zip timestamps
    "$DESTDIR$VENV/bin/python" - "$1" <<'EOF'
import hashlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    name, version = record.split("/")[0].removesuffix(".dist-info").split("-")
    print(name, version, hashlib.sha256(z.read(record)).hexdigest())
EOF
}

install_package() {
    if [ ! -x "$DESTDIR$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$DESTDIR$VENV"
        did "created the venv $VENV"
    fi
    build_wheel
    local stamp
    stamp=$(wheel_stamp "$WHEEL")
    if [ -f "$DESTDIR$STAMP" ] && [ "$(cat "$DESTDIR$STAMP")" = "$stamp" ] \
        && [ -x "$DESTDIR$VENV/bin/stackcue" ]; then
        say "unchanged ${stamp% *} in $VENV"
        return
    fi
    # same version, new content: pip would call it satisfied, so the old one goes first
    "$DESTDIR$VENV/bin/python" -m pip uninstall -q -y stackcue >/dev/null 2>&1 || true
    "$DESTDIR$VENV/bin/python" -m pip install -q "$WHEEL"
    echo "$stamp" >"$DESTDIR$STAMP"
    package_changed=1
    did "installed ${stamp% *} and its dependencies into $VENV"
}

write_config() {
    local target=$ETC/config.toml
    if [ -e "$DESTDIR$target" ]; then
        say "kept $target (it exists; make install never overwrites it)"
        return
    fi
    local rendered=$WORK/config.toml
    {
        echo "# $target: written once by \`make install\` from the shipped defaults, with the Pi's logbook"
        echo "# path; make install never overwrites it. Edit freely; a key removed falls back to its default."
        echo "#"
        # the Pi's logbook lives in the unit's StateDirectory
        awk -v state="$STATE" '
            /^\[/ { section = $0 }
            section == "[logbook]" && /^path *=/ && !done {
                sub(/= *"[^"]*"/, "= \"" state "/logbook.sqlite\""); done = 1
            }
            { print }' "$SRC/config/default.toml"
    } >"$rendered"
    grep -q "^path = \"$STATE/logbook.sqlite\"" "$rendered" || die "could not set [logbook] path in $target"
    install -D -m 0640 "$rendered" "$DESTDIR$target"
    staged || chown root:$USER_NAME "$target"
    did "wrote $target (mode 0640, group $USER_NAME): the defaults with [logbook] path = $STATE/logbook.sqlite"
}

install_units() {
    local u rendered
    for u in $UNITS; do
        rendered=$WORK/$u
        sed "s#/opt/stackcue/#$PREFIX/#g" "$SRC/config/$u" >"$rendered"
        if install_file "$rendered" "$UNIT_DIR/$u" 0644; then units_changed=1; fi
    done
}

systemd_enable() {
    local u
    if staged; then
        say "skipped systemctl (DESTDIR set); a real install runs daemon-reload and enable $UNITS"
        return
    fi
    if ! systemd_running; then
        say "systemd is not running here: later, systemctl daemon-reload && systemctl enable $UNITS"
        return
    fi
    if [ "$units_changed" = 1 ]; then
        systemctl daemon-reload
        did "systemctl daemon-reload"
    fi
    for u in $UNITS; do
        if ! systemctl is-enabled -q "$u" 2>/dev/null; then
            systemctl enable -q "$u"
            did "enabled $u (starts at boot)"
        fi
    done
    if [ "$package_changed" = 1 ] || [ "$units_changed" = 1 ]; then
        for u in $UNITS; do
            if systemctl is-active -q "$u"; then
                systemctl try-restart "$u"
                did "restarted $u (it was running the old version)"
            fi
        done
    fi
}

do_install() {
    echo "stackcue: installing into ${DESTDIR:-/} (program $PREFIX, configuration $ETC, logbook $STATE)"
    apt_packages
    user_and_groups
    ensure_dir "$PREFIX" 0755 root:root
    ensure_dir "$ETC" 0750 root:$USER_NAME
    ensure_dir "$STATE" 0700 $USER_NAME:$USER_NAME
    install_package
    install_file "$SRC/README.md" "$PREFIX/doc/README.md" 0644 || true
    write_config
    install_units
    systemd_enable
    if [ "$changes" = 0 ]; then
        echo "stackcue: nothing to do, everything was already installed"
    else
        echo "stackcue: done ($changes changes)"
    fi
    if ! staged; then
        echo "  next: edit $ETC/config.toml ([runner], [source]), then: systemctl start stackcue stackcue-cue;" \
            "journalctl -u stackcue -f"
        echo "  phones over the LAN need the broker's TLS listener: $SRC/config/mosquitto/README.md"
    fi
}

remove_path() {
    local path=$DESTDIR$1
    if [ -e "$path" ] || [ -L "$path" ]; then
        rm -rf -- "$path"
        did "removed $1"
    fi
}

do_uninstall() {
    local u
    echo "stackcue: removing from ${DESTDIR:-/} (program $PREFIX, units)"
    if systemd_running; then
        for u in $UNITS; do
            if systemctl is-enabled -q "$u" 2>/dev/null || systemctl is-active -q "$u"; then
                systemctl disable -q --now "$u"
                did "stopped and disabled $u"
            fi
        done
    elif staged; then
        say "skipped systemctl (DESTDIR set); a real uninstall stops and disables $UNITS"
    fi
    for u in $UNITS; do
        remove_path "$UNIT_DIR/$u"
    done
    if systemd_running && [ "$changes" != 0 ]; then
        systemctl daemon-reload
        did "systemctl daemon-reload"
    fi
    # only what install made: PREFIX may hold something else (an old clone in /opt/stackcue)
    remove_path "$VENV"
    remove_path "$PREFIX/doc"
    remove_path "$STAMP"
    if [ -d "$DESTDIR$PREFIX" ]; then
        if rmdir "$DESTDIR$PREFIX" 2>/dev/null; then
            did "removed $PREFIX"
        else
            say "left $PREFIX: it holds files make install did not put there"
        fi
    fi
    if [ "$PURGE" = 1 ]; then
        remove_path "$ETC"
        remove_path "$STATE"
        if staged; then
            say "skipped removing user $USER_NAME (DESTDIR set)"
        elif getent passwd "$USER_NAME" >/dev/null; then
            userdel "$USER_NAME"
            did "removed system user $USER_NAME"
        fi
    else
        say "kept $ETC (configuration) and $STATE (logbook): PURGE=1 removes them and user $USER_NAME"
    fi
    if [ "$changes" = 0 ]; then
        echo "stackcue: nothing to remove"
    else
        echo "stackcue: removed ($changes changes)"
    fi
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
WHEEL_DIR=${WHEEL_DIR:-$WORK/wheel}

case "$ACTION" in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) die "usage: install.sh install|uninstall (see the Makefile's install and uninstall targets)" ;;
esac
