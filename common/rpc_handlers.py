"""A protos-declared service's gRPC method handlers from its behaviours alone: each RPC's
request and response classes (and so its (de)serializers) and whether its client streams
come from the service's descriptor, so they are not written again beside each handler."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor


def service_handler(
    service: ServiceDescriptor, behaviors: Mapping[str, Callable]
) -> grpc.GenericRpcHandler:
    """The handler of `service` answering each RPC named in `behaviors` with its behaviour
    (unary, or stream-unary where the RPC's client streams)."""
    handlers = {}
    for name, behavior in behaviors.items():
        method = service.methods_by_name[name]
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        make = (
            grpc.stream_unary_rpc_method_handler
            if method.client_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[name] = make(
            behavior,
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
