#!/bin/sh
# certbot --manual hook: publishes DNS-01 values through pryv-tls's embedded DNS
# (a dns-record/ row "_acme-challenge", answered by every core within a second).
#
#   certbot certonly --manual --preferred-challenges dns \
#     --manual-auth-hook '/etc/pryv/hooks/certbot-dns-hook.sh auth' \
#     --manual-cleanup-hook '/etc/pryv/hooks/certbot-dns-hook.sh cleanup' \
#     -d '*.mc.example.com' -d mc.example.com
#
# certbot runs it as root (the control socket lets root in), once per name, with
# CERTBOT_VALIDATION set; a wildcard + apex order publishes two values at the
# same name, so the values are collected in $STATE and loaded together.
set -eu

WORKDIR=/opt/pryv   # serve's working directory: relative paths resolve here
CONFIG="--config /etc/pryv/pryv-tls/default-config.yml --config /etc/pryv/pryv-tls/override-config.yml"
STATE=/run/pryv-tls-certbot-dns01
WAIT=5              # seconds for every core to answer the new value

cd "$WORKDIR"
case "${1:-}" in
auth)
	echo "$CERTBOT_VALIDATION" >>"$STATE"
	{
		echo 'records:'
		echo '  - subdomain: _acme-challenge'
		echo '    records:'
		echo '      txt:'
		sed "s/.*/        - '&'/" "$STATE"
	} >"$STATE.yml"
	# shellcheck disable=SC2086 # CONFIG is a list of flags
	pryv-tls dns-records load $CONFIG "$STATE.yml" >&2
	sleep "$WAIT"
	;;
cleanup)
	rm -f "$STATE" "$STATE.yml"
	# shellcheck disable=SC2086
	pryv-tls dns-records delete $CONFIG _acme-challenge >&2 || true # already gone after the first name
	;;
*)
	echo "usage: $0 auth|cleanup (run by certbot)" >&2
	exit 2
	;;
esac
