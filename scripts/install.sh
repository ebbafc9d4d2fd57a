#!/usr/bin/env bash
# Installs a released smax-campaign binary: the pinned version, its archive
# checked against the release's SHA256SUMS (and against SMAX_CAMPAIGN_SHA256
# when given). When the release has no binary for this machine (or cannot be
# reached), it builds that version from source with `cargo install --locked`.
# A checksum that does not match is an error, never a reason to fall back.
#
#   SMAX_CAMPAIGN_VERSION=0.1.0 bash scripts/install.sh
#
# SMAX_CAMPAIGN_VERSION  the version to install (default: this checkout's Cargo.toml)
# SMAX_CAMPAIGN_REPO     owner/name on GitHub (default: smax-bot/smax-campaign)
# SMAX_CAMPAIGN_SHA256   the archive's expected SHA-256, pinned by you (optional)
# SMAX_CAMPAIGN_BIN_DIR  where the binary goes (default: ~/.local/bin)
# SMAX_CAMPAIGN_TARGET   the target triple (default: from uname)
# SMAX_CAMPAIGN_RELEASE_URL  the release's download URL (default: GitHub's)
# SMAX_CAMPAIGN_SOURCE   a source checkout to build from when falling back
#                        (default: the git tag vVERSION of the repository)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
version=${SMAX_CAMPAIGN_VERSION:-}
if [ -z "$version" ] && [ -f "$here/Cargo.toml" ]; then
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/Cargo.toml" | head -n 1)
fi
if [ -z "$version" ]; then
    echo "install: set SMAX_CAMPAIGN_VERSION (e.g. 0.1.0)" >&2
    exit 2
fi
version=${version#v}
repo=${SMAX_CAMPAIGN_REPO:-smax-bot/smax-campaign}
bin_dir=${SMAX_CAMPAIGN_BIN_DIR:-$HOME/.local/bin}
base=${SMAX_CAMPAIGN_RELEASE_URL:-https://github.com/$repo/releases/download/v$version}

target=${SMAX_CAMPAIGN_TARGET:-}
if [ -z "$target" ]; then
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) target=x86_64-unknown-linux-musl ;;
        Linux-aarch64 | Linux-arm64) target=aarch64-unknown-linux-musl ;;
        Darwin-x86_64) target=x86_64-apple-darwin ;;
        Darwin-arm64) target=aarch64-apple-darwin ;;
        *) target=none ;;
    esac
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sha256() {
    if command -v sha256sum > /dev/null; then
        sha256sum "$1" | cut -d ' ' -f 1
    else
        shasum -a 256 "$1" | cut -d ' ' -f 1
    fi
}

from_source() {
    if [ -n "${SMAX_CAMPAIGN_SHA256:-}" ]; then
        # A pinned hash names an archive; a build from a (movable) tag is not it.
        echo "install: no released archive to check against the pinned SMAX_CAMPAIGN_SHA256 ($1); refusing to build from source instead" >&2
        exit 1
    fi
    echo "install: no released smax-campaign $version for $target ($1); building it from source" >&2
    local root="$tmp/root"
    if [ -n "${SMAX_CAMPAIGN_SOURCE:-}" ]; then
        "${SMAX_CAMPAIGN_CARGO:-cargo}" install --locked --root "$root" --path "$SMAX_CAMPAIGN_SOURCE"
    else
        "${SMAX_CAMPAIGN_CARGO:-cargo}" install --locked --root "$root" \
            --git "https://github.com/$repo" --tag "v$version" smax-campaign
    fi
    mkdir -p "$bin_dir"
    install -m 0755 "$root/bin/smax-campaign" "$bin_dir/smax-campaign"
    echo "install: smax-campaign $version built from source in $bin_dir"
}

name="smax-campaign-v$version-$target"
archive="$name.tar.gz"

if [ "$target" = none ]; then
    from_source "no binary is built for $(uname -s) $(uname -m)"
    exit 0
fi
if ! curl -fsSL --retry 3 -o "$tmp/$archive" "$base/$archive" \
    || ! curl -fsSL --retry 3 -o "$tmp/SHA256SUMS" "$base/SHA256SUMS"; then
    from_source "cannot download $base/$archive"
    exit 0
fi

actual=$(sha256 "$tmp/$archive")
listed=$(awk -v f="$archive" '$2 == f || $2 == "*" f { print $1 }' "$tmp/SHA256SUMS")
if [ -z "$listed" ]; then
    echo "install: $archive is not in the release's SHA256SUMS; refusing to install it" >&2
    exit 1
fi
if [ "$actual" != "$listed" ]; then
    echo "install: checksum mismatch for $archive: it hashes to $actual, SHA256SUMS says $listed; refusing to install it" >&2
    exit 1
fi
pinned=$(printf '%s' "${SMAX_CAMPAIGN_SHA256:-}" | tr 'A-F' 'a-f')
if [ -n "$pinned" ] && [ "$actual" != "${pinned#sha256:}" ]; then
    echo "install: checksum mismatch for $archive: it hashes to $actual, the pinned SMAX_CAMPAIGN_SHA256 is $SMAX_CAMPAIGN_SHA256; refusing to install it" >&2
    exit 1
fi

tar -xzf "$tmp/$archive" -C "$tmp"
mkdir -p "$bin_dir"
install -m 0755 "$tmp/$name/smax-campaign" "$bin_dir/smax-campaign"
echo "install: smax-campaign $version ($target, sha256 $actual) in $bin_dir"
