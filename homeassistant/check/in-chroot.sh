#!/bin/bash
# Run a command inside the trixie chroot with a clean environment and the host's CA bundle
# (a network whose TLS proxy has its own CA: pip and HA then trust what the host trusts).
R=${TRIXIE:-/opt/trixie}
exec chroot "$R" /usr/bin/env -i HOME=/root PATH=/opt/ha-venv/bin:/usr/local/bin:/usr/bin:/bin \
  LANG=C.UTF-8 PIP_CERT=/etc/ssl/host-ca.crt SSL_CERT_FILE=/etc/ssl/host-ca.crt \
  REQUESTS_CA_BUNDLE=/etc/ssl/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
  "$@"
