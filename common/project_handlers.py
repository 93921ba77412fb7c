"""Serving the RPCs of whichever project is in service: the gRPC server asks for a method's
handler on every call, and gets it from a table built once per project version, so a
deploy changes what a running server answers without a restart (calls in flight finish on
the handlers they started with)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import grpc

from pipit.project.runtime import CurrentProject, Project

_T = TypeVar("_T")
# Tables of the last few versions stay, for calls that began before a swap.
_KEPT_VERSIONS = 4


class PerProject(Generic[_T]):
    """A value derived from a project, built once per version."""

    def __init__(self, current: CurrentProject, build: Callable[[Project], _T]) -> None:
        self._current = current
        self._build = build
        self._built: OrderedDict[str, _T] = OrderedDict()

    def get(self) -> _T:
        project = self._current.project
        value = self._built.get(project.version)
        if value is None:
            value = self._built[project.version] = self._build(project)
            while len(self._built) > _KEPT_VERSIONS:
                self._built.popitem(last=False)
        return value


class ProjectHandlers(grpc.GenericRpcHandler):
    """A generic handler answering `/<service>/<method>` from the project in service."""

    def __init__(
        self,
        current: CurrentProject,
        build: Callable[[Project], Mapping[str, grpc.RpcMethodHandler]],
    ) -> None:
        self._tables = PerProject(current, build)

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        return self._tables.get().get(handler_call_details.method)

    def build(self) -> None:
        """Builds the table of the project in service now, before any call needs it (off
        the event loop, before the server serves: nothing else touches the tables then)."""
        self._tables.get()


class ScopeRules:
    """The scope each method needs: fixed rules for the platform's services, and the
    project's own, which change with it. Looked up as a mapping (`get`)."""

    def __init__(
        self,
        fixed: Mapping[str, Any],
        current: CurrentProject | None = None,
        build: Callable[[Project], Mapping[str, Any]] | None = None,
    ) -> None:
        self._fixed = dict(fixed)
        self._project = (
            PerProject(current, build) if current is not None and build is not None else None
        )

    def get(self, method: str, default: Any = None) -> Any:
        if method in self._fixed:
            return self._fixed[method]
        if self._project is not None:
            return self._project.get().get(method, default)
        return default

    def __or__(self, other: ScopeRules) -> ScopeRules:
        merged = ScopeRules({**self._fixed, **other._fixed})
        projects = [r._project for r in (self, other) if r._project is not None]
        if len(projects) > 1:
            raise ValueError("only one set of project rules can be merged")
        merged._project = projects[0] if projects else None
        return merged
