"""The generated agentmesh.v1 modules, importable as `pb` (messages) and
`rpc` (gRPC stubs). Generates them first when missing or stale."""

from __future__ import annotations

import sys

from . import codegen

codegen.ensure()
if str(codegen.OUT_DIR) not in sys.path:
    sys.path.insert(0, str(codegen.OUT_DIR))

from agentmesh.v1 import agent_pb2 as pb  # noqa: E402
from agentmesh.v1 import agent_pb2_grpc as rpc  # noqa: E402
from agentmesh.v1 import content_pb2 as content  # noqa: E402
from agentmesh.v1 import errors_pb2 as errors  # noqa: E402
from agentmesh.v1 import registry_pb2 as registry  # noqa: E402
from agentmesh.v1 import registry_pb2_grpc as registry_rpc  # noqa: E402

__all__ = ["pb", "rpc", "content", "errors", "registry", "registry_rpc"]
