"""Self-registration with an orchestrator's RegistryService: register,
renew the lease at a third of its length, register again when it was lost,
back off (exponential, jittered) while the orchestrator cannot be reached,
and deregister on shutdown."""

from __future__ import annotations

import logging
import random
import threading

import grpc
from google.protobuf import duration_pb2
from opentelemetry.trace import SpanKind

from . import tracing
from .protos import registry, registry_rpc

log = logging.getLogger("agentmesh_forecast.registration")

BACKOFF_FIRST = 0.2
BACKOFF_MAX = 10.0
RPC_TIMEOUT = 5.0


class Registration:
    """Keeps `advertise` registered with the orchestrator at `orchestrator`."""

    def __init__(self, orchestrator: str, advertise: str, lease_ms: int) -> None:
        self.address = f"http://{advertise}"
        self.lease_ms = lease_ms
        self.channel = grpc.insecure_channel(orchestrator)
        self.stub = registry_rpc.RegistryServiceStub(self.channel)
        self.stop_event = threading.Event()
        self.lease_id: str | None = None
        self.registered = threading.Event()
        self.thread = threading.Thread(target=self._run, name="registration", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _register(self) -> float:
        lease = duration_pb2.Duration()
        lease.FromMilliseconds(self.lease_ms)
        # A trace of its own, continued by the registry.
        with tracing.tracer().start_as_current_span("register", kind=SpanKind.CLIENT):
            resp = self.stub.Register(
                registry.RegisterRequest(address=self.address, lease=lease),
                timeout=RPC_TIMEOUT,
                metadata=tracing.inject(),
            )
        self.lease_id = resp.lease_id
        self.registered.set()
        granted = resp.lease.ToTimedelta().total_seconds()
        log.info("registered %s, lease %s for %.1f s", self.address, self.lease_id, granted)
        return granted

    # doc:begin lease
    def _run(self) -> None:
        backoff = BACKOFF_FIRST
        granted = 0.0
        while not self.stop_event.is_set():
            try:
                if self.lease_id is None:
                    granted = self._register()
                else:
                    resp = self.stub.RenewLease(
                        registry.RenewLeaseRequest(lease_id=self.lease_id), timeout=RPC_TIMEOUT
                    )
                    granted = resp.lease.ToTimedelta().total_seconds()
                backoff = BACKOFF_FIRST
                self.stop_event.wait(max(granted / 3, 0.1))
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    log.warning("lease %s lost; registering again", self.lease_id)
                    self.lease_id = None
                    continue
                wait = random.uniform(0, backoff)
                log.warning("registration: %s: %s; again in %.1f s", e.code().name, e.details(), wait)
                self.stop_event.wait(wait)
                backoff = min(backoff * 2, BACKOFF_MAX)
    # doc:end lease

    def stop(self) -> None:
        """Stops renewing and deregisters (idempotent on the server)."""
        self.stop_event.set()
        self.thread.join(timeout=RPC_TIMEOUT)
        if self.lease_id is not None:
            try:
                self.stub.Deregister(
                    registry.DeregisterRequest(lease_id=self.lease_id), timeout=RPC_TIMEOUT
                )
                log.info("deregistered %s", self.address)
            except grpc.RpcError as e:
                log.warning("deregister: %s: %s", e.code().name, e.details())
        self.channel.close()
