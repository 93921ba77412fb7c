"""HTTP/JSON ⇄ gRPC gateway driven by the `google.api.http` rules of the descriptor set,
answering as Envoy's grpc_json_transcoder does so that Envoy can replace it."""

from gateway.app import bound_port, create_app, serve_gateway

__all__ = ["bound_port", "create_app", "serve_gateway"]
