#!/bin/sh
# Init step of every ClickHouse pod in the cluster: gives the node its identity.
# A StatefulSet's pods differ only by their ordinal, so the {shard} and {replica} macros
# (which the Replicated tables' Keeper paths use) are derived from it: pods
# 0..REPLICAS_PER_SHARD-1 form shard 1, the next REPLICAS_PER_SHARD shard 2, and so on,
# matching the order of remote_servers in cluster.xml.
#
# Environment: POD_NAME (e.g. clickhouse-3), SHARDS, REPLICAS_PER_SHARD,
# HEADLESS_SERVICE, TEMPLATES (directories of XML to install), CONFIG_D (where to).
set -eu

ordinal="${POD_NAME##*-}"
shard=$((ordinal / REPLICAS_PER_SHARD + 1))
if [ "$shard" -gt "$SHARDS" ]; then
    # More pods than remote_servers names: this one would hold data no query reads.
    echo "identity: $POD_NAME is beyond $SHARDS shards x $REPLICAS_PER_SHARD replicas" >&2
    exit 1
fi

for dir in $TEMPLATES; do
    cp "$dir"/*.xml "$CONFIG_D"/
done

cat > "$CONFIG_D/identity.xml" <<XML
<clickhouse>
    <macros>
        <shard>$shard</shard>
        <replica>$POD_NAME</replica>
    </macros>
    <!-- The name other replicas fetch this node's parts from. -->
    <interserver_http_host>$POD_NAME.$HEADLESS_SERVICE</interserver_http_host>
</clickhouse>
XML
echo "identity: $POD_NAME is replica $POD_NAME of shard $shard"
