#!/usr/bin/env bash
# The release step: builds the two Spin apps and pushes each to an OCI
# registry as a Spin application (`spin registry push`), the artifact
# `spin up --from`, SpinKube (deploy/spinkube/) and the containerd shim
# (deploy/kubernetes/) run:
#
#     scripts/package.sh REGISTRY/PATH/sse-gateway:TAG [spin registry push options]
#
# pushes
#     REGISTRY/PATH/sse-gateway:TAG      spin.toml, the default build
#     REGISTRY/PATH/sse-gateway-p3:TAG   spin-p3.toml, the WASIp3 build (Spin >= 4.1)
# and prints those two references, one a line, as its last lines (Spin's
# and cargo's output go to stderr). Options after the reference go to
# `spin registry push`: `--insecure` for a registry that speaks plain HTTP
# (a local one on loopback). Log in first with `spin registry login`.
#
#     scripts/package.sh --dry-run REF   prints the two references only
#                                        (no build, no Spin, no registry)
#
# tests/oci.rs runs this against a registry on loopback and serves both
# references with `spin up --from`; tests/deploy_manifests.rs checks that
# the manifests under deploy/ name what it pushes.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=false
if [ "${1:-}" = --dry-run ]; then
    dry_run=true
    shift
fi
ref=${1:-}
if [ -z "$ref" ] || [[ "$ref" == -* ]]; then
    echo "usage: scripts/package.sh [--dry-run] REGISTRY/PATH/sse-gateway:TAG [spin registry push options]" >&2
    exit 2
fi
shift
# The tag is what follows the last ':' of the last path segment (a
# registry's ':PORT' is in the first segment); a digest cannot be pushed to.
name_tag=${ref##*/}
if [[ "$ref" != */* ]] || [[ "$name_tag" != *:* ]] || [[ "$ref" == *@* ]]; then
    echo "package.sh: $ref: expected REGISTRY/PATH/NAME:TAG (a tag, no digest)" >&2
    exit 2
fi
repo=${ref%:*}
tag=${ref##*:}
p3_ref="$repo-p3:$tag"

if ! $dry_run; then
    . scripts/tools.sh
    find_spin
    if [ -z "$SPIN" ]; then
        echo "package.sh: no Spin found (\$SPIN, spin on PATH, ../shared/spin/install.sh)" >&2
        exit 1
    fi
    # Each manifest's `source` is the path its build writes; building first
    # means what is pushed is the source as checked out, never a stale file.
    scripts/build.sh spin >/dev/null
    scripts/build.sh p3-spin >/dev/null
    "$SPIN" registry push -f spin.toml "$@" "$ref" >&2
    "$SPIN" registry push -f spin-p3.toml "$@" "$p3_ref" >&2
fi
echo "$ref"
echo "$p3_ref"
