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
#
# It prints nothing when it succeeds (certbot reports any stderr output as an
# error), and a line on stderr with a non-zero exit when it fails. cleanup
# takes out its own value only, and is done when that value is already gone:
# running it twice is not an error.
set -eu

WORKDIR=${PRYV_TLS_HOOK_WORKDIR:-/opt/pryv} # serve's working directory: relative paths resolve here
CONFIG=${PRYV_TLS_HOOK_CONFIG:-"--config /etc/pryv/pryv-tls/default-config.yml --config /etc/pryv/pryv-tls/override-config.yml"}
STATE=${PRYV_TLS_HOOK_STATE:-/run/pryv-tls-certbot-dns01}
WAIT=${PRYV_TLS_HOOK_WAIT:-5} # seconds for every core to answer the new value

# publish loads the values left in $STATE as the TXT records of
# _acme-challenge, or deletes the row when none is left.
publish() {
	if [ -s "$STATE" ]; then
		{
			echo 'records:'
			echo '  - subdomain: _acme-challenge'
			echo '    records:'
			echo '      txt:'
			sed "s/.*/        - '&'/" "$STATE"
		} >"$STATE.yml"
		# shellcheck disable=SC2086 # CONFIG is a list of flags
		pryv-tls dns-records load $CONFIG "$STATE.yml" >/dev/null
		return
	fi
	rm -f "$STATE" "$STATE.yml"
	# The row may be gone already (a second cleanup): that is the goal.
	# shellcheck disable=SC2086
	if ! out=$(pryv-tls dns-records delete $CONFIG _acme-challenge 2>&1); then
		case "$out" in
		*"not found"*) ;;
		*)
			echo "$out" >&2
			return 1
			;;
		esac
	fi
}

cd "$WORKDIR"
case "${1:-}" in
auth)
	: "${CERTBOT_VALIDATION:?is not set: run by certbot}"
	touch "$STATE"
	grep -qxF -- "$CERTBOT_VALIDATION" "$STATE" || echo "$CERTBOT_VALIDATION" >>"$STATE"
	publish
	sleep "$WAIT"
	;;
cleanup)
	: "${CERTBOT_VALIDATION:?is not set: run by certbot}"
	if [ -f "$STATE" ]; then
		grep -vxF -- "$CERTBOT_VALIDATION" "$STATE" >"$STATE.left" || true
		mv "$STATE.left" "$STATE"
	fi
	publish
	;;
*)
	echo "usage: $0 auth|cleanup (run by certbot)" >&2
	exit 2
	;;
esac
