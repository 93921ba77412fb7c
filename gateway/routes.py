"""The route table: every `google.api.http` rule of every served method, read from the
descriptor set alone, so that adding an endpoint needs no gateway code and Envoy's transcoder,
fed the same descriptor set, routes identically.

Matching follows grpc-httpjson-transcoding's PathMatcher (the library inside Envoy):
- the request path is split on "/" without unescaping, trailing empty segments are dropped, and a
  `:verb` suffix of the last segment is split off only if some rule declares that verb;
- a literal segment beats `*`, which beats `**` (the order of its trie walk), and `**` may match
  zero segments;
- the HTTP method is part of the key, so a known path with the wrong method finds no route;
  `allowed_methods` tells such a path (405) from an unknown one (404).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

HTTP_BODY = "google.api.HttpBody"

_LITERAL, _SINGLE, _MULTI = 0, 1, 2  # also the precedence of a segment kind: lower wins
LITERAL_SEGMENT = _LITERAL  # the kind of a PathTemplate segment that is literal text
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_LITERAL_TEXT = re.compile(r"[^/{}*:]+")


@dataclass(frozen=True)
class Variable:
    """A `{field.path=...}` capture: segments [start, end) of the request path; end None means
    through the last segment (the pattern ends in `**`)."""

    field_path: str
    start: int
    end: int | None

    @property
    def multi_segment(self) -> bool:
        # Envoy unescapes reserved characters only in single-segment captures.
        return self.end is None or self.end - self.start > 1


@dataclass(frozen=True)
class PathTemplate:
    """A parsed HttpRule path template (`/v1/{name=shelves/*}/books:verb`)."""

    source: str
    segments: tuple[tuple[int, str], ...]  # (kind, literal text or "")
    variables: tuple[Variable, ...]
    verb: str

    @property
    def open_ended(self) -> bool:
        """Whether the template ends in `**`, which takes any number of segments, none too."""
        return bool(self.segments) and self.segments[-1][0] == _MULTI

    @property
    def literals(self) -> tuple[tuple[int, str], ...]:
        """(index, text) of each literal segment: all a path must equal to match."""
        return tuple((i, text) for i, (kind, text) in enumerate(self.segments) if kind == _LITERAL)

    def match(self, parts: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
        """(field path, raw captured segments) per variable, or None if `parts` don't match."""
        segments = self.segments
        if self.open_ended:
            if len(parts) < len(segments) - 1:
                return None
        elif len(parts) != len(segments):
            return None
        for (kind, text), part in zip(segments, parts, strict=False):
            if kind == _LITERAL and part != text:
                return None
        return tuple(
            (v.field_path, tuple(parts[v.start : len(parts) if v.end is None else v.end]))
            for v in self.variables
        )

    @property
    def precedence(self) -> tuple[int, ...]:
        """Sort key among templates matching one path, lower preferred: comparing segment kinds
        left to right picks what the matcher's literal-first, then `*`, then `**` walk finds."""
        return tuple(kind for kind, _ in self.segments)


def parse_template(source: str) -> PathTemplate:
    """Parses the google.api.http path template grammar; raises ValueError if malformed."""
    if not source.startswith("/"):
        raise ValueError(f"path template must start with '/': {source!r}")
    path, verb = source, ""
    colon = source.rfind(":")
    if colon > source.rfind("/") and colon > source.rfind("}"):
        path, verb = source[:colon], source[colon + 1 :]
        if not _LITERAL_TEXT.fullmatch(verb):
            raise ValueError(f"bad verb in path template {source!r}")

    segments: list[tuple[int, str]] = []
    variables: list[Variable] = []
    for token in _split_outside_braces(path[1:]) if path != "/" else []:
        if token.startswith("{"):
            if not token.endswith("}"):
                raise ValueError(f"unclosed variable in path template {source!r}")
            field_path, _, pattern = token[1:-1].partition("=")
            if not _FIELD_PATH.fullmatch(field_path):
                raise ValueError(f"bad field path {field_path!r} in {source!r}")
            start = len(segments)
            segments.extend(_parse_segment(s, source) for s in (pattern or "*").split("/"))
            end = None if segments[-1][0] == _MULTI else len(segments)
            variables.append(Variable(field_path, start, end))
        else:
            segments.append(_parse_segment(token, source))
    if any(kind == _MULTI for kind, _ in segments[:-1]):
        raise ValueError(f"'**' must be the last segment of {source!r}")
    return PathTemplate(source, tuple(segments), tuple(variables), verb)


def _split_outside_braces(text: str) -> list[str]:
    tokens, depth, current = [], 0, []
    for char in text:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if char == "/" and depth == 0:
            tokens.append("".join(current))
            current = []
        else:
            current.append(char)
    tokens.append("".join(current))
    return tokens


def _parse_segment(text: str, source: str) -> tuple[int, str]:
    if text == "*":
        return (_SINGLE, "")
    if text == "**":
        return (_MULTI, "")
    if not _LITERAL_TEXT.fullmatch(text):
        raise ValueError(f"bad segment {text!r} in path template {source!r}")
    return (_LITERAL, text)


@lru_cache(maxsize=4096)
def resolve_field_path(message: Descriptor, path: str) -> tuple[FieldDescriptor, ...] | None:
    """The fields named by a dotted path, each part by proto name or JSON name (as Envoy's
    TypeHelper resolves them); None if any part is unknown or descends through a repeated or
    non-message field."""
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = message
    for name in path.split("."):
        if current is None:
            return None
        field = current.fields_by_name.get(name) or _by_json_name(current).get(name)
        if field is None:
            return None
        fields.append(field)
        current = None if field.is_repeated else field.message_type
    return tuple(fields)


@lru_cache(maxsize=1024)
def _by_json_name(message: Descriptor) -> dict[str, FieldDescriptor]:
    return {f.json_name: f for f in message.fields}


@dataclass(frozen=True)
class Route:
    """One HTTP binding of one unary method."""

    http_method: str
    template: PathTemplate
    grpc_method: str  # "/package.Service/Method"
    request_class: type[Message]
    response_class: type[Message]
    body: str  # "" (no body), "*" (the whole request) or a field path
    body_fields: tuple[FieldDescriptor, ...]
    body_is_http_body: bool
    response_fields: tuple[FieldDescriptor, ...]
    response_is_http_body: bool
    # A client-streaming method (its body a google.api.HttpBody): the body goes up a chunk
    # per message as it arrives (gateway/body_stream.py), as Envoy's transcoder sends it.
    client_streaming: bool = False

    @property
    def service(self) -> str:
        return self.grpc_method[1:].partition("/")[0]


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    bindings: tuple[tuple[str, tuple[str, ...]], ...]  # raw (still escaped) path captures
    multi_segment: tuple[bool, ...]  # per binding: whether reserved characters stay escaped


class RouteTable:
    """All routes, looked up by HTTP method and raw request path."""

    def __init__(self, routes: Iterable[Route], pool: descriptor_pool.DescriptorPool) -> None:
        self.routes = tuple(routes)
        self.pool = pool
        self._verbs = frozenset(r.template.verb for r in self.routes if r.template.verb)
        # The routes a request may take, by HTTP method and verb, most preferred first (a
        # stable sort: among equals, the first declared), so the first match is the best.
        candidates: dict[tuple[str, str], list[Route]] = {}
        for r in sorted(self.routes, key=lambda r: r.template.precedence):
            candidates.setdefault((r.http_method, r.template.verb), []).append(r)
        self._candidates = {key: tuple(routes) for key, routes in candidates.items()}
        # A template of literals alone is the best match of the one path it matches (no
        # `*` or `**` sorts before a literal), so those paths are looked up directly.
        self._literal = {
            (r.http_method, r.template.verb, tuple(text for _, text in r.template.segments)): r
            for r in self.routes
            if len(r.template.literals) == len(r.template.segments)
        }
        seen: dict[tuple[str, str, tuple[tuple[int, str], ...]], str] = {}
        for r in self.routes:
            key = (r.http_method, r.template.verb, r.template.segments)
            if key in seen:
                # Envoy's matcher answers nothing for an ambiguous path; refuse it up front.
                raise ValueError(
                    f"{r.http_method} {r.template.source} is bound by both {seen[key]} "
                    f"and {r.grpc_method}"
                )
            seen[key] = r.grpc_method

    @property
    def http_methods(self) -> frozenset[str]:
        return frozenset(r.http_method for r in self.routes)

    def match(self, http_method: str, raw_path: str) -> RouteMatch | None:
        parts, verb = self._split(raw_path)
        literal = self._literal.get((http_method, verb, tuple(parts)))
        if literal is not None:
            return RouteMatch(literal, (), ())
        for route in self._candidates.get((http_method, verb), ()):
            bindings = route.template.match(parts)
            if bindings is not None:
                variables = {v.field_path: v.multi_segment for v in route.template.variables}
                return RouteMatch(route, bindings, tuple(variables[name] for name, _ in bindings))
        return None

    def allowed_methods(self, raw_path: str) -> tuple[str, ...]:
        """The HTTP methods some route binds to this path, sorted: empty for a path no route
        knows. Matching is `match`'s with the method left out, so a request is 405 exactly when
        this is non-empty and `match` finds nothing for its method."""
        parts, verb = self._split(raw_path)
        return tuple(
            sorted(
                {
                    route.http_method
                    for route in self.routes
                    if route.template.verb == verb and route.template.match(parts) is not None
                }
            )
        )

    @property
    def verbs(self) -> frozenset[str]:
        """The custom verbs (`:verb`) some rule declares: only these are split off a path."""
        return self._verbs

    def _split(self, raw_path: str) -> tuple[list[str], str]:
        path, verb = raw_path, ""
        colon = path.rfind(":")
        if colon > path.rfind("/") and path[colon + 1 :] in self._verbs:
            path, verb = path[:colon], path[colon + 1 :]
        parts = path[1:].split("/") if path.startswith("/") else path.split("/")
        while parts and not parts[-1]:
            parts.pop()
        return parts, verb


def _pool(file_set: descriptor_pb2.FileDescriptorSet) -> descriptor_pool.DescriptorPool:
    # A pool of the gateway's own, so the descriptor set alone defines what it serves.
    # Dependencies go in first, whatever order the set lists files in.
    files = {f.name: f for f in file_set.file}
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added:
            return
        added.add(name)
        proto = files.get(name)
        if proto is None:
            raise ValueError(f"descriptor set lacks {name!r}; build it with --include_imports")
        for dependency in proto.dependency:
            add(dependency)
        pool.Add(proto)

    for name in files:
        add(name)
    return pool


def load_routes(descriptor_set: bytes, services: Iterable[str]) -> RouteTable:
    """Routes for every HttpRule (and additional binding) of the named services. Like Envoy, an
    unknown service name is a configuration error; methods without a rule are not routed."""
    # Read rules from the FileDescriptorProtos: this module imports google.api.annotations, so
    # parsing decodes the `http` method option whatever pool the descriptors end up in.
    file_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    pool = _pool(file_set)
    service_protos = {
        f"{f.package}.{s.name}".lstrip("."): s for f in file_set.file for s in f.service
    }
    routes: list[Route] = []
    for service_name in services:
        service_proto = service_protos.get(service_name)
        if service_proto is None:
            raise ValueError(f"service {service_name!r} is not in the descriptor set")
        service = pool.FindServiceByName(service_name)
        for method_proto in service_proto.method:
            if not method_proto.options.HasExtension(annotations_pb2.http):
                continue
            rule = method_proto.options.Extensions[annotations_pb2.http]
            method = service.methods_by_name[method_proto.name]
            if method.server_streaming:
                raise ValueError(
                    f"{method.full_name} streams its answer; the gateway transcodes unary "
                    "answers only"
                )
            for binding in (rule, *rule.additional_bindings):
                route = _route(binding, f"/{service_name}/{method.name}", method)
                if method.client_streaming and not route.body_is_http_body:
                    # Envoy would read such a body as a JSON array of messages; nothing here
                    # needs that, so it is refused rather than half supported.
                    raise ValueError(
                        f"{method.full_name} streams its request: its body must be a "
                        "google.api.HttpBody"
                    )
                routes.append(route)
    return RouteTable(routes, pool)


def _route(rule: http_pb2.HttpRule, grpc_method: str, method: MethodDescriptor) -> Route:
    pattern = rule.WhichOneof("pattern")
    if pattern is None:
        raise ValueError(f"{grpc_method}: HttpRule has no pattern")
    if pattern == "custom":
        http_method, path = rule.custom.kind.upper(), rule.custom.path
    else:
        http_method, path = pattern.upper(), getattr(rule, pattern)
    template = parse_template(path)
    request, response = method.input_type, method.output_type
    for variable in template.variables:
        fields = resolve_field_path(request, variable.field_path)
        if fields is None or fields[-1].message_type is not None or fields[-1].is_repeated:
            raise ValueError(
                f"{grpc_method}: path variable {variable.field_path!r} must name a scalar field"
            )
    body_fields = _resolve(request, rule.body, grpc_method, "body")
    response_fields = _resolve(response, rule.response_body, grpc_method, "response_body")
    return Route(
        http_method=http_method,
        template=template,
        grpc_method=grpc_method,
        request_class=message_factory.GetMessageClass(request),
        response_class=message_factory.GetMessageClass(response),
        body=rule.body,
        body_fields=body_fields,
        body_is_http_body=bool(rule.body) and _is_http_body(request, body_fields),
        response_fields=response_fields,
        response_is_http_body=_is_http_body(response, response_fields),
        client_streaming=method.client_streaming,
    )


def _resolve(
    message: Descriptor, path: str, grpc_method: str, what: str
) -> tuple[FieldDescriptor, ...]:
    if path in ("", "*"):
        return ()
    fields = resolve_field_path(message, path)
    if fields is None:
        raise ValueError(f"{grpc_method}: {what} {path!r} is not a field of {message.full_name}")
    return fields


def _is_http_body(message: Descriptor, fields: tuple[FieldDescriptor, ...]) -> bool:
    target = fields[-1].message_type if fields else message
    return (
        target is not None
        and target.full_name == HTTP_BODY
        and not (fields and fields[-1].is_repeated)
    )
