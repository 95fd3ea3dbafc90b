#!/bin/bash
# The image's HEALTHCHECK: GET /health/live on this container's port with bash's /dev/tcp (the
# image has no curl and no Python); exit 0 on HTTP 200, else 1.
exec 3<>"/dev/tcp/127.0.0.1/${EDGE_MM_SERVER_PORT:-8080}" || exit 1
printf 'GET /health/live HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
read -r -t 5 _ status _ <&3 || exit 1
[ "$status" = 200 ]
