"""Pipit's gRPC services: ingest and query."""
