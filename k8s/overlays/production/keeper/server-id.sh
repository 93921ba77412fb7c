#!/bin/sh
# Init step of every Keeper pod: Raft needs each server to know its own id, and a
# StatefulSet's pods differ only by their ordinal, so server n is pod ordinal n-1.
# Environment: POD_NAME (e.g. clickhouse-keeper-2), TEMPLATE (keeper_config.xml with
# @SERVER_ID@), CONFIG (the file to write).
set -eu

ordinal="${POD_NAME##*-}"
server_id=$((ordinal + 1))
sed "s/@SERVER_ID@/$server_id/" "$TEMPLATE" > "$CONFIG"
echo "keeper: $POD_NAME is Raft server $server_id"
