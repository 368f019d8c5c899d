#!/usr/bin/env bash
# Installs the Debian packages podnet's build, demo and tests need, if missing.
# Idempotent: when everything is present it only runs dpkg-query once.
set -euo pipefail
want=(nftables iproute2 iputils-ping dnsutils curl openssl socat netcat-openbsd procps kmod etcd-server containerd runc containernetworking-plugins "$@")
missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
  $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
}
# containerd is only for the tests, which start their own (own socket, root,
# state and CNI dirs). Where this script installed it and systemd runs, stop
# and disable the service the package enables, so the machine does not keep
# a second container runtime running on /run/containerd; a containerd that
# was installed before is the operator's and is left alone.
case " ${missing[*]} " in
*" containerd "*)
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    $SUDO systemctl disable --now containerd.service >/dev/null 2>&1 || true
  fi ;;
esac
# Likewise nginx (for the ingress benchmark, which runs its own with a
# generated config on 127.0.0.1): the package starts a server on port 80;
# stop and disable it where this script installed it.
case " ${missing[*]} " in
*" nginx "*)
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    $SUDO systemctl disable --now nginx.service >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/nginx ]; then
    $SUDO /etc/init.d/nginx stop >/dev/null 2>&1 || true
    $SUDO update-rc.d nginx disable >/dev/null 2>&1 || true
  fi ;;
esac
