#!/bin/sh
# Install the zhizao edge agent on Debian / Raspberry Pi OS (arm64, armhf, amd64).
#   sudo ./install.sh [PIP-SPEC]      PIP-SPEC defaults to "zhizao==$ZHIZAO_VERSION" (the version this
#                                     installer ships with), or a wheel file built from this repository
# Creates the system user "zhizao", a virtualenv in /opt/zhizao/venv (wheels only: no compiler
# needed on the box, and no package code runs during the install), /etc/zhizao/agent.toml from the
# sample if absent, an empty /etc/zhizao/agent.token (root:zhizao 0640: the agent can read it, a
# token written into it keeps that) if absent, state in /var/lib/zhizao, and installs the systemd
# unit. The service is enabled and started only once agent.toml differs from the sample it wrote
# (its sha256 is kept in /etc/zhizao/agent.toml.sample-sha256): the sample's agent.id "cell-1",
# simulator endpoints and missing token are not a box's config, and two boxes running it would
# write as one producer. After editing: systemctl enable --now zhizao-agent (or run this again).
# The config is checked as the service user (runuser -u zhizao), with /etc/zhizao/agent.env's
# variables when that file exists. Safe to run again (upgrades the package, keeps the config and
# the token).
#
# Supply chain: pip runs as root (the venv must not be writable by the service user), so the
# installer never builds from source (--only-binary=:all:: installing a wheel runs no code) and
# pins zhizao to one version. To verify every file against known hashes, pass a lock file:
#   sudo ZHIZAO_REQUIREMENTS=/path/requirements.lock ./install.sh
# (`pip-compile --generate-hashes` or `pip download` + `pip hash` on a trusted machine): pip then
# installs with --require-hashes and refuses anything not listed with its sha256. A local wheel
# (sudo ./install.sh ./zhizao-0.2.0-py3-none-any.whl) avoids the package index for zhizao itself.
ZHIZAO_VERSION=0.2.0
SPEC="${1:-zhizao==$ZHIZAO_VERSION}"
REQUIREMENTS="${ZHIZAO_REQUIREMENTS:-}"
PREFIX=/opt/zhizao
ETC=/etc/zhizao
STATE=/var/lib/zhizao
UNITDIR=/etc/systemd/system
HERE="$(cd "$(dirname "$0")" && pwd)"

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo)" >&2
    exit 1
fi

echo "== system packages"
apt-get update -q
apt-get install -y -q python3 python3-venv python3-pip ca-certificates

PYV="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$PYV" in
    3.1[1-9]) ;;
    *) echo "install.sh: Python >= 3.11 needed, found $PYV (Debian 12 / Raspberry Pi OS bookworm or later)" >&2; exit 1 ;;
esac

echo "== user and folders"
if ! id zhizao >/dev/null 2>&1; then
    adduser --system --group --home "$STATE" --no-create-home zhizao
fi
install -d -o root -g zhizao -m 0750 "$ETC"
install -d -o zhizao -g zhizao -m 0750 "$STATE" "$STATE/pki"

if [ -n "$REQUIREMENTS" ]; then
    echo "== virtualenv $PREFIX/venv (hash-checked: $REQUIREMENTS)"
else
    echo "== virtualenv $PREFIX/venv ($SPEC)"
fi
python3 -m venv "$PREFIX/venv"
# --only-binary: every dependency ships aarch64/armv7/x86_64 wheels or is pure Python; no sdist is
# ever built (that would run its code as root). No fallback: a missing wheel is an error.
if [ -n "$REQUIREMENTS" ]; then
    "$PREFIX/venv/bin/pip" install -q --upgrade --only-binary=:all: --require-hashes -r "$REQUIREMENTS"
else
    "$PREFIX/venv/bin/pip" install -q --upgrade --only-binary=:all: "$SPEC"
fi
INSTALLED="$("$PREFIX/venv/bin/zhizao" --version 2>/dev/null || true)"
echo "   installed: ${INSTALLED:-nothing}"
case "$SPEC" in
    zhizao==*) [ "$INSTALLED" = "zhizao ${SPEC#zhizao==}" ] || { echo "install.sh: expected zhizao ${SPEC#zhizao==}, found '${INSTALLED}'" >&2; exit 1; } ;;
esac
chown -R root:root "$PREFIX"
chmod -R go-w "$PREFIX"

echo "== configuration"
if [ ! -f "$ETC/agent.toml" ]; then
    SAMPLE="$("$PREFIX/venv/bin/python" -c 'import edge_agent, pathlib; print(pathlib.Path(edge_agent.__file__).with_name("sample-agent.toml"))')"
    install -o root -g zhizao -m 0640 "$SAMPLE" "$ETC/agent.toml"
    # the sample's state_dir is "." (the unit's working directory): name the folder, so that
    # 'agent certs' or 'check-config' run from any directory use the same buffer and certificates
    sed -i "s|^state_dir = \".\"|state_dir = \"$STATE\"|" "$ETC/agent.toml"
    grep -q "^state_dir = \"$STATE\"" "$ETC/agent.toml" || { echo "state_dir not set in $ETC/agent.toml" >&2; exit 1; }
    # what was written, to tell an edited config from the untouched sample
    sha256sum "$ETC/agent.toml" > "$ETC/agent.toml.sample-sha256"
    echo "   wrote $ETC/agent.toml from the sample: set [agent] id (one per box), connectors and uplink"
fi
if [ ! -e "$ETC/agent.token" ]; then
    # empty until the ingest token is written into it (as root: the file keeps owner and mode):
    #   zhizao ingest ... token create --name <agent id> --scope write > /etc/zhizao/agent.token
    install -o root -g zhizao -m 0640 /dev/null "$ETC/agent.token"
    echo "   created $ETC/agent.token (root:zhizao 0640, empty): write the agent's ingest token into it"
fi

# load_env_file FILE: export FILE's variables as systemd's EnvironmentFile= reads them (the unit
# reads agent.env so): KEY=VALUE lines, '#' and ';' lines comments, blanks around key and value
# dropped, one pair of enclosing quotes removed, nothing expanded or run ('a b', '$x' stay as
# written). Sourcing it with '.' would run 'b' of 'KEY=a b' as a command and expand '$x'.
load_env_file() {
    while IFS= read -r line || [ -n "$line" ]; do
        line="${line#"${line%%[![:space:]]*}"}"
        case "$line" in ''|'#'*|';'*) continue ;; *=*) ;; *) echo "$1: not KEY=VALUE: line ignored" >&2; continue ;; esac
        key="${line%%=*}"; val="${line#*=}"
        key="${key%"${key##*[![:space:]]}"}"
        case "$key" in ''|[0-9]*|*[!A-Za-z0-9_]*) echo "$1: '$key' is not a variable name: line ignored" >&2; continue ;; esac
        val="${val#"${val%%[![:space:]]*}"}"; val="${val%"${val##*[![:space:]]}"}"
        case "$val" in \"*\") val="${val#\"}"; val="${val%\"}" ;; \'*\') val="${val#\'}"; val="${val%\'}" ;; esac
        export "$key=$val"
    done < "$1"
}

echo "== systemd unit"
install -m 0644 "$HERE/zhizao-agent.service" "$UNITDIR/zhizao-agent.service"
systemctl daemon-reload
if [ -f "$ETC/agent.toml.sample-sha256" ] && sha256sum -c --status "$ETC/agent.toml.sample-sha256" 2>/dev/null; then
    # never run the unedited sample (agent.id "cell-1", simulator endpoints, no token)
    systemctl disable --now zhizao-agent.service 2>/dev/null || true
    echo "   not enabled, not started: $ETC/agent.toml is still the sample. Edit it, then:" >&2
    echo "   $PREFIX/venv/bin/zhizao agent check-config --config $ETC/agent.toml && systemctl enable --now zhizao-agent" >&2
    exit 0
fi
systemctl enable zhizao-agent.service
# checked as the service's user, with its environment file: what root can read, zhizao may not
if (
    cd "$STATE" || exit 1
    if [ -f "$ETC/agent.env" ]; then load_env_file "$ETC/agent.env" || exit 1; fi
    exec runuser -u zhizao -- "$PREFIX/venv/bin/zhizao" agent check-config --config "$ETC/agent.toml"
); then
    systemctl restart zhizao-agent.service
    echo "   started: systemctl status zhizao-agent; curl -s localhost:9108/healthz"
else
    echo "   not started: fix $ETC/agent.toml (as user zhizao), then: systemctl start zhizao-agent" >&2
fi
