"""What Pipit's services share: configuration, telemetry, auth, datasource schemas,
row validation and warehouse access."""
