"""The DeployService's handlers: deploys (admin only) and the deployment in service (for
gateways, like reflection needs no token)."""

from __future__ import annotations

import grpc
import structlog
from google.protobuf.message import Message

from common.auth import ScopeRule
from common.rpc_handlers import service_handler
from common.tokens import ADMIN
from pipit.deploy.v1 import deploy_service_pb2 as pb
from pipit.project.compiler import BuildFailed
from pipit.project.deploy import Deployer, DeployRefused
from pipit.project.runtime import CurrentProject

log = structlog.get_logger("deploy")

SERVICE = pb.DESCRIPTOR.services_by_name["DeployService"]
# Most problems shown in one error message; the rest are counted.
MAX_PROBLEMS_SHOWN = 50


class DeployApi:
    """Deploys through a Deployer; reads the project in service."""

    def __init__(self, deployer: Deployer, current: CurrentProject) -> None:
        self._deployer = deployer
        self._current = current

    async def deploy(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        files = {f.path: f.content for f in request.files}
        if len(files) != len(request.files):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a file is sent twice")
        try:
            deployed = await self._deployer.deploy(
                files, allow_destructive=request.allow_destructive, dry_run=request.dry_run
            )
        except BuildFailed as exc:
            shown = [str(p) for p in exc.problems[:MAX_PROBLEMS_SHOWN]]
            more = len(exc.problems) - len(shown)
            message = "\n".join(shown + ([f"… and {more} more"] if more > 0 else []))
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the project was not deployed: {len(exc.problems)} problem(s)\n{message}",
            )
        except DeployRefused as exc:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"the project was not deployed: {exc}"
            )
        return pb.DeployResponse(version=deployed.version, changes=list(deployed.changes))

    async def get_deployment(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        project = self._current.project
        if request.known_version == project.version:
            return pb.Deployment(version=project.version)
        return pb.Deployment(version=project.version, descriptor_set=project.descriptor_set)

    @staticmethod
    def scope_rules() -> dict[str, ScopeRule]:
        base = f"/{SERVICE.full_name}"
        return {
            f"{base}/Deploy": lambda _request: ADMIN,
        }

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return service_handler(
            SERVICE, {"Deploy": self.deploy, "GetDeployment": self.get_deployment}
        )
