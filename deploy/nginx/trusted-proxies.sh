#!/bin/sh
# Run by the nginx image at start (mounted into /docker-entrypoint.d/): turns RZ_LB_TRUSTED_PROXIES,
# a comma-separated list of the addresses or CIDR ranges of proxies in front of the balancer, into
# the set_real_ip_from lines the rendezvous server block includes. Empty or unset: trust nobody,
# and every client is the address that connected.
set -eu

out="${RZ_LB_TRUSTED_PROXIES_CONF:-/etc/nginx/rendezvous/trusted-proxies.conf}"
mkdir -p "$(dirname "$out")"
tmp="$out.tmp"
echo "# Written from RZ_LB_TRUSTED_PROXIES=${RZ_LB_TRUSTED_PROXIES:-} at start." > "$tmp"
for item in $(printf '%s' "${RZ_LB_TRUSTED_PROXIES:-}" | tr ',' ' '); do
    case "$item" in
        *[!0-9A-Fa-f.:/]* | "" )
            echo "RZ_LB_TRUSTED_PROXIES: not an IP address or CIDR range: $item" >&2
            rm -f "$tmp"
            exit 1
            ;;
    esac
    echo "set_real_ip_from $item;" >> "$tmp"
done
mv "$tmp" "$out"
