"""agentmesh forecast agent: the `forecast.revenue` skill, in Python.

A separate gRPC service implementing `agentmesh.v1.AgentService` from the
protos in the repository's `proto/` folder (stubs generated at build time by
`agentmesh_forecast.codegen`), with health, reflection, heartbeats, cancel,
deadlines, idempotency and self-registration.
"""

__version__ = "0.1.0"
