"""`python -m agentmesh_forecast`: runs the forecast agent until SIGTERM or
SIGINT, then drains."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from . import __version__


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="forecast-agent",
        description="agentmesh forecast agent (forecast.revenue), a gRPC AgentService in Python",
    )
    p.add_argument("--listen", default="127.0.0.1:50061", help="host:port to serve on")
    p.add_argument("--max-concurrency", type=_positive, default=8, help="tasks at once")
    p.add_argument("--heartbeat-ms", type=_positive, default=1000, help="heartbeat interval cap")
    p.add_argument("--max-task-ms", type=_positive, default=60_000, help="longest a task may run")
    p.add_argument("--shutdown-grace-ms", type=int, default=10_000, help="time running tasks get on SIGTERM")
    p.add_argument("--fault-delay-ms", type=int, default=0, help="fault injection: every task waits this long (heartbeating, cancellable) before it starts")
    p.add_argument("--ask-horizon", action="store_true", default=os.environ.get("AGENTMESH_FORECAST_ASK_HORIZON", "").lower() in ("1", "true", "yes"), help="ask a person how many months to forecast when the input names none (env AGENTMESH_FORECAST_ASK_HORIZON)")
    p.add_argument("--register", metavar="HOST:PORT", help="orchestrator to register with")
    p.add_argument("--advertise", metavar="HOST:PORT", help="address the orchestrator reaches this agent at (default: --listen)")
    p.add_argument("--lease-ms", type=int, default=10_000, help="registration lease asked for")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--otlp-endpoint", metavar="URL", help="export spans over OTLP/gRPC to this collector, e.g. http://otel-collector:4317 (default: none)")
    p.add_argument("--otlp-sample-ratio", type=float, default=1.0, help="share of new traces recorded, 0 to 1 (a parent's decision is followed)")
    p.add_argument("--otlp-export-interval-ms", type=_positive, default=5000, help="how often finished spans are sent")
    p.add_argument("--version", action="version", version=f"forecast-agent {__version__}")
    args = p.parse_args(argv)
    if args.fault_delay_ms < 0 or args.shutdown_grace_ms < 0:
        p.error("--fault-delay-ms and --shutdown-grace-ms must not be negative")
    if args.lease_ms < 300:
        p.error("--lease-ms must be at least 300")
    if not 0.0 <= args.otlp_sample_ratio <= 1.0:
        p.error("--otlp-sample-ratio must be between 0 and 1")
    if args.otlp_endpoint and not args.otlp_endpoint.startswith(("http://", "https://")):
        p.error("--otlp-endpoint must be an http:// or https:// URL")
    return args


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from . import tracing

        return json.dumps(
            {
                "time": self.formatTime(record),
                "level": record.levelname,
                "target": record.name,
                "message": record.getMessage(),
                **tracing.ids(),
            }
        )


def _exit_with_parent(stop: threading.Event) -> None:
    """Stops (gracefully) when the process that started this one goes away,
    so a killed `meshctl up` leaves no orphans."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()
    if args.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    log = logging.getLogger("agentmesh_forecast")

    from . import tracing
    from .registration import Registration
    from .server import Server, Settings

    tracing.setup(args.otlp_endpoint, args.otlp_sample_ratio, args.otlp_export_interval_ms)

    settings = Settings(
        max_concurrency=args.max_concurrency,
        heartbeat_ms=args.heartbeat_ms,
        max_task_ms=args.max_task_ms,
        shutdown_grace_ms=args.shutdown_grace_ms,
        fault_delay_ms=args.fault_delay_ms,
        ask_horizon=args.ask_horizon,
    )
    try:
        server = Server(args.listen, settings)
    except (OSError, RuntimeError) as e:
        log.error("cannot serve on %s: %s", args.listen, e)
        return 69
    server.start()
    host = args.listen.rsplit(":", 1)[0]
    log.info("forecast agent %s serving on %s:%d", __version__, host, server.port)
    registration = None
    if args.register:
        registration = Registration(args.register, args.advertise or f"{host}:{server.port}", args.lease_ms)
        registration.start()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if os.environ.get("AGENTMESH_EXIT_WITH_PARENT") == "1":
        _exit_with_parent(stop)
    stop.wait()
    log.info("shutting down: draining")
    server.stop(before_drain=registration.stop if registration else None)
    tracing.shutdown()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
