#!/bin/bash
# Installs what lets the Pi and the runner's phone find each other away from home (docs/phone.md):
#   stackcue-hotspot   NetworkManager profile: the Pi joins the phone's hotspot (--ssid, --psk)
#   stackcue-ap        NetworkManager profile: the Pi's own access point when no known network is in range
#                      (--ap-ssid, default "stackcue"; --ap-psk)
#   stackcue.service   avahi DNS-SD record: the web app as _https._tcp on the port `stackcue serve` listens on:
#                      --port, else [serve] port of --config FILE (default /etc/stackcue/config.toml when it
#                      exists), else the shipped default (config/default.toml)
#   the host name      --hostname (default stackcue): avahi answers for <hostname>.local
#
#   sudo config/network/install-network.sh --ssid "Ana's phone" --psk '...' --ap-psk '...'
#
# Every step checks before it acts, so a second run changes nothing and says so. It never activates a
# profile (that would drop an SSH session over the current Wi-Fi): they take effect at the next boot.
#   --dry-run  prints what it would do and changes nothing, not even under DESTDIR
#   DESTDIR    staging root: files land under it; nmcli, hostnamectl, systemctl and apt are only reported
# Secrets are never printed. A bad argument is refused in one line (exit 2) before anything changes.
set -euo pipefail
umask 077 # the rendered profiles hold passphrases: never readable by others, not even in the temp dir

DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NM_DIR=/etc/NetworkManager/system-connections
AVAHI_DIR=/etc/avahi/services
# avahi-daemon: mDNS; dnsmasq-base: the DHCP server NetworkManager runs for a shared (access point) profile
APT_PACKAGES="avahi-daemon dnsmasq-base"
ME=install-network.sh

SSID="" PSK="" AP_SSID=stackcue AP_PSK="" HOST=stackcue PORT="" CONFIG="" DRY=0
changes=0 nm_changed=0 avahi_changed=0

# say, did, die, staged, dry, install_file, missing_packages (shared with config/install.sh)
# shellcheck source=config/lib.sh
. "$SRC/../lib.sh"
bad() { printf '%s: %s\n' "$ME" "$*" >&2; exit 2; }

# serve_port FILE: the [serve] table's port in a TOML file (a plain `port = N` line), empty when not set.
serve_port() {
    awk '
        /^[[:space:]]*\[/ { t = $0; gsub(/[[:space:]]/, "", t); insec = (t ~ /^\[serve\]/) }
        insec && /^[[:space:]]*port[[:space:]]*=/ {
            v = $0; sub(/^[^=]*=[[:space:]]*/, "", v); sub(/[[:space:]]*(#.*)?$/, "", v); print v; exit
        }' "$1"
}
DEFAULT_PORT=$(serve_port "$SRC/../default.toml")

usage() {
    cat <<EOF
usage: $ME --ssid SSID --psk PASSPHRASE --ap-psk PASSPHRASE [--ap-ssid SSID] [--hostname NAME]
                          [--port N | --config FILE] [--dry-run]
  --ssid, --psk     the phone hotspot's name and passphrase (the Pi joins it)
  --ap-ssid         the name of the Pi's own access point (default stackcue)
  --ap-psk          its passphrase (8 to 63 characters)
  --hostname        the Pi's host name, so the page is at https://NAME.local:PORT/ (default stackcue)
  --port            the port stackcue serve listens on, advertised over DNS-SD
  --config          read that port from this configuration's [serve] port (default /etc/stackcue/config.toml
                    when it exists, else the shipped default, $DEFAULT_PORT)
  --dry-run         print what would be done, change nothing
Environment: DESTDIR=DIR stages the files under DIR and runs no system command.
EOF
}

while [ $# -gt 0 ]; do
    opt=$1
    case "$opt" in
        --dry-run) DRY=1; shift; continue ;;
        -h | --help) usage; exit 0 ;;
        --*=*) val=${opt#*=}; opt=${opt%%=*}; shift ;;
        --ssid | --psk | --ap-ssid | --ap-psk | --hostname | --port | --config)
            [ $# -ge 2 ] || bad "$opt needs a value"
            val=$2; shift 2 ;;
        *) bad "unknown argument '$opt' (--help lists them)" ;;
    esac
    case "$opt" in
        --ssid) SSID=$val ;;
        --psk) PSK=$val ;;
        --ap-ssid) AP_SSID=$val ;;
        --ap-psk) AP_PSK=$val ;;
        --hostname) HOST=$val ;;
        --port) PORT=$val ;;
        --config) CONFIG=$val ;;
        *) bad "unknown option '$opt' (--help lists them)" ;;
    esac
done

# ------------------------------------------------------------------ checks (before anything changes)

check_ssid() { # OPTION VALUE: 1 to 32 bytes, no control characters
    local LC_ALL=C
    [ -n "$2" ] || bad "$1 is required (the Wi-Fi network's name)"
    [ ${#2} -le 32 ] || bad "$1: an SSID has at most 32 bytes (got ${#2})"
    [[ $2 != *[[:cntrl:]]* ]] || bad "$1: an SSID cannot hold control characters or line breaks"
}

check_psk() { # OPTION VALUE: a WPA passphrase (8 to 63 printable ASCII characters) or 64 hex digits
    local LC_ALL=C
    [ -n "$2" ] || bad "$1 is required (8 to 63 characters)"
    [[ $2 =~ ^[0-9A-Fa-f]{64}$ ]] && return 0
    if [ ${#2} -lt 8 ] || [ ${#2} -gt 63 ]; then
        bad "$1: a WPA passphrase has 8 to 63 characters (got ${#2})"
    fi
    [[ $2 =~ ^[\ -~]+$ ]] || bad "$1: a WPA passphrase is printable ASCII only (letters, digits, punctuation, spaces)"
}

check_ssid --ssid "$SSID"
check_psk --psk "$PSK"
check_ssid --ap-ssid "$AP_SSID"
check_psk --ap-psk "$AP_PSK"
[[ $HOST =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] \
    || bad "--hostname: '$HOST' is not a host name (lower-case letters, digits and inner hyphens, at most 63)"
if [ -n "$PORT" ]; then
    PORT_FROM=--port
else
    if [ -z "$CONFIG" ] && [ -r "$DESTDIR/etc/stackcue/config.toml" ]; then
        CONFIG=$DESTDIR/etc/stackcue/config.toml
    fi
    if [ -n "$CONFIG" ]; then
        [ -r "$CONFIG" ] || bad "--config: cannot read '$CONFIG'"
        PORT=$(serve_port "$CONFIG")
        PORT_FROM="$CONFIG: [serve] port"
        [ -n "$PORT" ] || { PORT=$DEFAULT_PORT; PORT_FROM="the default [serve] port (not set in $CONFIG)"; }
    else
        PORT=$DEFAULT_PORT
        PORT_FROM="the default [serve] port"
    fi
fi
if ! [[ $PORT =~ ^[0-9]{1,5}$ ]] || [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then
    bad "$PORT_FROM: '$PORT' is not a TCP port (1 to 65535)"
fi
if ! staged && ! dry && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo $0 ...), or stage into a directory with DESTDIR=..., or look first with --dry-run"
fi

# ------------------------------------------------------------------ rendering

# GKeyFile's string escaping (what NetworkManager's keyfile reader undoes): backslashes, a leading space.
kf_string() {
    local v=${1//\\/\\\\}
    [[ $v == " "* ]] && v="\\s${v:1}"
    printf '%s' "$v"
}

# NetworkManager's own rule for writing an SSID (ssid_writer): printable ASCII as a string, anything else
# (UTF-8 such as "Ana’s iPhone") as a list of bytes, "65;110;97;"; ';' and '\' go the byte way as well.
kf_ssid() {
    local LC_ALL=C b out=""
    if [[ $1 =~ ^[\ -~]+$ && $1 != *";"* && $1 != *\\* ]]; then
        kf_string "$1"
        return
    fi
    for b in $(printf '%s' "$1" | od -An -v -tu1); do out+="$b;"; done
    printf '%s' "$out"
}

declare -A FILL=(
    [@SSID@]=$(kf_ssid "$SSID")
    [@PSK@]=$(kf_string "$PSK")
    [@AP_SSID@]=$(kf_ssid "$AP_SSID")
    [@AP_PSK@]=$(kf_string "$AP_PSK")
    [@PORT@]=$PORT
)

# render TEMPLATE OUT: fills each placeholder in the template's non-comment lines (one per line, so a
# value holding another placeholder's name is never filled twice); refuses a placeholder left over.
render() {
    local line ph left
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ $line != "#"* ]]; then
            for ph in "${!FILL[@]}"; do
                if [[ $line == *"$ph"* ]]; then
                    line=${line/"$ph"/"${FILL[$ph]}"}
                    break
                fi
            done
        fi
        printf '%s\n' "$line"
    done <"$1" >"$2"
    left=$(grep -v '^#' "$1" | grep -o '@[A-Z_]*@' | sort -u | tr '\n' ' ' || true)
    for ph in $left; do
        [[ -v FILL[$ph] ]] || die "$1: unknown placeholder $ph"
    done
}

# run DESCRIPTION COMMAND...: a system command, only on a real install; reported otherwise.
run() {
    local what=$1
    shift
    if dry; then
        say "would run: $*"
    elif staged; then
        say "skipped (DESTDIR set): $*"
    else
        "$@"
        did "$what"
    fi
}

# ------------------------------------------------------------------ steps

apt_packages() {
    if dry || staged; then
        say "a real install checks the Debian packages $APT_PACKAGES and installs the missing ones"
        return
    fi
    command -v nmcli >/dev/null || die "NetworkManager (nmcli) is not installed: Raspberry Pi OS bookworm uses it by default"
    command -v dpkg-query >/dev/null || { say "not Debian (no dpkg-query): install by hand: $APT_PACKAGES"; return; }
    local missing
    missing=$(missing_packages $APT_PACKAGES)
    if [ -z "$missing" ]; then
        say "Debian packages present: $APT_PACKAGES"
        return
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
    did "installed Debian packages: $missing"
}

profiles() {
    local name
    for name in stackcue-hotspot stackcue-ap; do
        render "$SRC/$name.nmconnection" "$WORK/$name.nmconnection"
        if install_file "$WORK/$name.nmconnection" "$NM_DIR/$name.nmconnection" 0600; then nm_changed=1; fi
    done
    if [ "$nm_changed" = 1 ]; then
        run "nmcli connection reload (NetworkManager read the profiles)" nmcli connection reload
    fi
}

avahi_service() {
    render "$SRC/stackcue-avahi.service" "$WORK/stackcue.service"
    if install_file "$WORK/stackcue.service" "$AVAHI_DIR/stackcue.service" 0644; then avahi_changed=1; fi
}

host_name() {
    local current=""
    [ -r "$DESTDIR/etc/hostname" ] && current=$(tr -d ' \n' <"$DESTDIR/etc/hostname")
    if staged; then
        say "skipped (DESTDIR set): hostnamectl set-hostname $HOST, and 127.0.1.1 $HOST in /etc/hosts"
        return
    fi
    if [ "$current" = "$HOST" ]; then
        say "unchanged host name $HOST (the Pi answers as $HOST.local)"
        return
    fi
    run "set the host name to $HOST (was ${current:-unset}): the Pi answers as $HOST.local" \
        hostnamectl set-hostname "$HOST"
    if dry; then
        say "would name it on 127.0.1.1 in /etc/hosts (sudo resolves its own host name through it)"
    elif grep -q '^127\.0\.1\.1[[:space:]]' /etc/hosts; then
        sed -i "s/^127\.0\.1\.1[[:space:]].*/127.0.1.1\t$HOST/" /etc/hosts
        did "named $HOST on 127.0.1.1 in /etc/hosts"
    else
        printf '127.0.1.1\t%s\n' "$HOST" >>/etc/hosts
        did "added 127.0.1.1 $HOST to /etc/hosts"
    fi
    avahi_changed=1
}

avahi_restart() {
    [ "$avahi_changed" = 1 ] || return 0
    if ! dry && ! staged && ! [ -d /run/systemd/system ]; then
        say "systemd is not running here: restart avahi-daemon by hand"
        return
    fi
    run "restarted avahi-daemon (the new record and host name are announced)" systemctl try-restart avahi-daemon
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

mode="into ${DESTDIR:-/}"
dry && mode="$mode, dry run: nothing is changed"
echo "stackcue network: $mode (hotspot '$SSID', access point '$AP_SSID', https://$HOST.local:$PORT/)"
say "port $PORT from $PORT_FROM"
apt_packages
profiles
avahi_service
host_name
avahi_restart
if dry; then
    echo "stackcue network: dry run, nothing changed"
elif [ "$changes" = 0 ]; then
    echo "stackcue network: nothing to do, everything was already installed"
else
    echo "stackcue network: done ($changes changes)"
fi
if ! staged && ! dry; then
    echo "  the profiles take effect at the next boot; now: nmcli connection up stackcue-hotspot" \
        "(drops an SSH session over the current Wi-Fi)"
fi
