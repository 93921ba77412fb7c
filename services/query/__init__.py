"""The query service: one RPC per analytics endpoint, each a parameterised SQL file."""
