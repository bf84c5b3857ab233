# Sourced by the image builders (deploy/sandbox/build-image.sh, deploy/docker/build-base-images.sh).
# debian_mirror prints the Debian mirror to debootstrap from: $RLMESH_DEBIAN_MIRROR when set,
# else the first non-security Debian mirror in this machine's apt configuration (one-line
# sources.list entries and deb822 .sources files). No host is hard-coded: with neither, it fails
# with a message saying what to set.
debian_mirror() {
  if [ -n "${RLMESH_DEBIAN_MIRROR:-}" ]; then
    echo "$RLMESH_DEBIAN_MIRROR"
    return 0
  fi
  local url
  url="$(grep -hE '^[[:space:]]*(URIs:|deb[[:space:]])' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -v -- '-security' | grep -oE '(https?|file)://[^ ]*' | grep -E 'debian/?$' | head -n1 || true)"
  if [ -z "$url" ]; then
    echo "no Debian mirror: set RLMESH_DEBIAN_MIRROR (e.g. the URL of your local Debian mirror) or configure one in /etc/apt/sources.list(.d)" >&2
    return 1
  fi
  echo "$url"
}
