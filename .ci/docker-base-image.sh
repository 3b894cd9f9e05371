#!/usr/bin/env bash
# Builds the local base image the Docker tests (tests/docker.rs) run the binary on:
# a minimal Debian rootfs of the host's own release (so a binary built on the host
# finds the same glibc), made with debootstrap and `docker import`ed as
#
#     quorum-cache-test-base:<codename>        (e.g. quorum-cache-test-base:bookworm)
#
# No image can be pulled from a registry on the CI machines, hence this. It is
# idempotent: when the image exists it returns at once. It installs debootstrap
# with apt-get when missing, and takes the Debian mirror from apt's own sources.
#
# Usage: .ci/docker-base-image.sh [--force]     (--force rebuilds the image)
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; fi

# shellcheck source=/dev/null
. /etc/os-release
codename="${VERSION_CODENAME:?/etc/os-release names no VERSION_CODENAME}"
if [ "${ID:-}" != "debian" ]; then
    echo "docker-base-image: the host is ${ID:-unknown}, not Debian: the base image must match the" >&2
    echo "  release the binary is built on; build one yourself and tag it quorum-cache-test-base:<codename>" >&2
    exit 1
fi
image="quorum-cache-test-base:${codename}"

docker info >/dev/null 2>&1 || { echo "docker-base-image: no Docker engine answers" >&2; exit 1; }

# One builder at a time; a second caller waits, then finds the image.
exec 9>"/tmp/quorum-cache-docker-base-image.lock"
flock 9

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "docker-base-image: $image exists"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "docker-base-image: installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq debootstrap >/dev/null
fi

# The mirror apt already uses for "<codename>" (deb822 .sources first, then one-line lists).
mirror="$(
    {
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] || continue
            awk -v want="$codename" '
                function flush() {
                    if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ")) { split(uris, u, " "); print u[1] }
                    types = ""; uris = ""; suites = ""
                }
                /^[[:space:]]*$/ { flush(); next }
                /^[[:space:]]*#/ { next }
                tolower($1) == "types:"  { $1 = ""; types = $0 }
                tolower($1) == "uris:"   { $1 = ""; sub(/^ +/, ""); uris = $0 }
                tolower($1) == "suites:" { $1 = ""; suites = $0 }
                END { flush() }
            ' "$f"
        done
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -f "$f" ] || continue
            awk -v want="$codename" '
                $1 == "deb" {
                    i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == want) print $i
                }
            ' "$f"
        done
    } | grep -E '^(https?|file)://' | head -n 1
)"
if [ -z "$mirror" ]; then
    echo "docker-base-image: apt's sources name no Debian mirror for $codename" >&2
    exit 1
fi

work="$(mktemp -d /tmp/quorum-cache-rootfs.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

echo "docker-base-image: debootstrap --variant=minbase $codename from apt's mirror (about a minute)"
start=$SECONDS
if ! debootstrap --variant=minbase "$codename" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
    echo "docker-base-image: debootstrap failed" >&2
    exit 1
fi

# Smaller: nothing here is needed at run time.
rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/tmp/* "$rootfs"/debootstrap
# The host's apt configuration must not leak into an image; an empty one is fine.
: >"$rootfs/etc/apt/sources.list"

tar --numeric-owner -C "$rootfs" -c . |
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase $codename (quorum-cache test base)" \
        - "$image" >/dev/null

docker run --rm "$image" /bin/true
echo "docker-base-image: built $image in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
