# shellcheck shell=bash
# Shared helpers for scripts/demo and scripts/test. Everything a run needs is
# installed and started from here: nothing is assumed to be on the machine
# beyond Debian 12 with Python 3.11 and root (or passwordless sudo).

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STAGEHAND_VENV:-$REPO/.venv}"
CACHE="$REPO/.cache"
BUILD="$REPO/.build"
BASE_IMAGE="stagehand/debian:bookworm"
TARGET_IMAGE="stagehand/target:bookworm"
export PATH="$VENV/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$BUILD/collections"
export ANSIBLE_CONFIG="$REPO/ansible.cfg"
export ANSIBLE_NOCOLOR="${ANSIBLE_NOCOLOR:-1}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -t 1 ] || export NO_COLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_install() {
    # apt_install PKG... : install Debian packages that are missing
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- Python: a venv with the pinned requirements -----------------------------
ensure_venv() {
    local stamp="$VENV/.stagehand-requirements"
    local want
    want="$(cat "$REPO/requirements.txt" "$REPO/requirements.lock" | sha256sum | cut -c1-64)"
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    log "creating Python venv at $VENV with pinned requirements"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade 'pip==24.2'
    "$VENV/bin/python" -m pip install -q -r "$REPO/requirements.txt" -c "$REPO/requirements.lock"
    echo "$want" > "$stamp"
}

# A second venv with the oldest ansible-core the collection supports, from
# requirements-minimum.txt (for `scripts/test minimum`), stamped like ensure_venv.
MIN_VENV="$REPO/.venv-min"
ensure_minimum_venv() {
    local stamp="$MIN_VENV/.stagehand-requirements"
    local want
    want="$(sha256sum < "$REPO/requirements-minimum.txt" | cut -c1-64)"
    if [ -x "$MIN_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    log "creating Python venv at $MIN_VENV with requirements-minimum.txt"
    [ -x "$MIN_VENV/bin/python" ] || python3 -m venv "$MIN_VENV"
    "$MIN_VENV/bin/python" -m pip install -q --upgrade 'pip==24.2'
    "$MIN_VENV/bin/python" -m pip install -q -r "$REPO/requirements-minimum.txt"
    echo "$want" > "$stamp"
}

# The collection must be importable as ansible_collections.stagehand.deploy.
# A symlink is enough for ansible-playbook and molecule; ansible-test needs a
# real copy (it resolves the working directory), made by collection_copy.
ensure_collection_link() {
    mkdir -p "$BUILD/collections/ansible_collections/stagehand"
    ln -sfn "$REPO" "$BUILD/collections/ansible_collections/stagehand/deploy"
    # Molecule's prerun installs a snapshot copy of the collection into the user's
    # collections path, first on the search path; a symlink to this checkout makes it
    # skip that, so every scenario tests the checkout itself.
    local user_link="$HOME/.ansible/collections/ansible_collections/stagehand/deploy"
    if [ "$(readlink "$user_link" 2>/dev/null)" != "$REPO" ]; then
        mkdir -p "$(dirname "$user_link")"
        rm -rf "$user_link"
        ln -sfn "$REPO" "$user_link"
    fi
}

collection_copy() {
    # collection_copy DEST_PARENT : copy the tracked and untracked-not-ignored files to
    # DEST_PARENT/ansible_collections/stagehand/deploy and print that path
    local dest="$1/ansible_collections/stagehand/deploy"
    rm -rf "$dest"
    mkdir -p "$dest"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -I{} sh -c 'test -e "{}" && echo "{}"' ) > "$BUILD/files.txt"
    rsync -a --files-from="$BUILD/files.txt" "$REPO/" "$dest/"
    # ansible-test wants a git repository or no VCS at all; give it a private one
    (cd "$dest" && git init -q && git add -A && git -c user.email=ci@localhost -c user.name=ci commit -qm snapshot)
    echo "$dest"
}

# ansible-test bootstraps pip in its venvs with a get-pip.py from a host that
# may be unreachable. It uses a cached script when present: ours installs pip
# from the pip wheel taken from PyPI.
ensure_get_pip_cache() {
    local cache="$HOME/.ansible/test/cache"
    local script="$cache/get_pip_24_2.py"
    mkdir -p "$cache"
    ls "$cache"/pip-24.2-*.whl >/dev/null 2>&1 || \
        "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: -d "$cache" 'pip==24.2'
    cp "$REPO/scripts/get_pip_standin.py" "$script"
}

# --- Docker engine and images -----------------------------------------------
ensure_docker() {
    if docker info >/dev/null 2>&1; then return 0; fi
    command -v dockerd >/dev/null 2>&1 || apt_install docker.io
    log "starting dockerd"
    as_root mkdir -p /var/log
    as_root setsid dockerd >/var/log/stagehand-dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        sleep 1
    done
    tail -20 /var/log/stagehand-dockerd.log >&2 || true
    die "dockerd did not come up within 60 s"
}

ensure_base_image() {
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
    log "building base image $BASE_IMAGE"
    if timeout 60 docker pull -q debian:bookworm >/dev/null 2>&1; then
        docker tag debian:bookworm "$BASE_IMAGE"
        return 0
    fi
    # No registry reachable: debootstrap a minimal Debian 12 and import it.
    apt_install debootstrap
    local root="$CACHE/bookworm-root"
    as_root rm -rf "$root"
    as_root debootstrap --variant=minbase --include=python3 bookworm "$root" http://deb.debian.org/debian >/dev/null
    as_root tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
    as_root rm -rf "$root"
}

ensure_target_image() {
    local want
    want="$(sha256sum "$REPO/testbed/Dockerfile" | cut -c1-16)"
    if [ "$(docker image inspect -f '{{ index .Config.Labels "stagehand.dockerfile" }}' "$TARGET_IMAGE" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    ensure_base_image
    log "building target image $TARGET_IMAGE (systemd, sshd, nginx, php-fpm, memcached, MariaDB)"
    docker build -q --label "stagehand.dockerfile=$want" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        -t "$TARGET_IMAGE" "$REPO/testbed" >/dev/null
}

ensure_ssh_key() {
    mkdir -p "$CACHE/ssh"
    chmod 700 "$CACHE/ssh"
    [ -f "$CACHE/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C stagehand-testbed -f "$CACHE/ssh/id_ed25519"
    command -v ssh >/dev/null 2>&1 || apt_install openssh-client
}

# The controller builds releases: git archive, then composer install. rsync is for
# ansible.posix.synchronize (the baseline of benchmarks/run-delta).
ensure_controller_tools() {
    apt_install git php-cli composer unzip rsync
}

ensure_testbed() {
    ensure_docker
    ensure_target_image
    ensure_ssh_key
    apt_install rsync
}

# What a deploy on the built-in container target needs besides the container: the
# database password (kept in .cache, made once) and the example app's git repository
# (tags v1, v2, ...; tests/fixtures/make-app-repo).
TESTBED_SECRETS="$CACHE/testbed-secrets.yml"
TESTBED_APP_REPO="$CACHE/app-repo"

ensure_testbed_inputs() {
    if [ ! -f "$TESTBED_SECRETS" ]; then
        mkdir -p "$CACHE"
        (umask 077 && printf 'stagehand_db_password: "%s"\n' "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" > "$TESTBED_SECRETS")
    fi
    if [ ! -d "$TESTBED_APP_REPO/.git" ]; then
        rm -rf "$TESTBED_APP_REPO"
        "$REPO/tests/fixtures/make-app-repo" "$TESTBED_APP_REPO" >/dev/null
    fi
}

# testbed_play PLAYBOOK [ANSIBLE-PLAYBOOK ARGS...]: run one of the collection's playbooks
# on the built-in container target (examples/inventory/testbed.yml) with the testbed's
# secrets and app repository. The first ansible-playbook on PATH runs it.
testbed_play() {
    log "ansible-playbook $*"
    (cd "$REPO" && ansible-playbook -i examples/inventory/testbed.yml -e "@$TESTBED_SECRETS" \
        -e "deploy_repo=$TESTBED_APP_REPO" "$@")
}
