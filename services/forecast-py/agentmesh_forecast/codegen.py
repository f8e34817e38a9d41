"""Generates the Python stubs of `proto/agentmesh/v1/*.proto` with grpcio-tools.

The stubs are build output, never edited or committed: they go to
`_generated/` beside this file, and are regenerated whenever a proto is newer
than them. `python -m agentmesh_forecast.codegen` brings them up to date (the
`run` script does, before starting the agent); `--force` regenerates.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
OUT_DIR = PACKAGE_DIR / "_generated"
STAMP = OUT_DIR / ".stamp"


class CodegenError(RuntimeError):
    """The protos could not be found or compiled."""


def proto_root() -> Path:
    """The folder holding `agentmesh/v1/*.proto`: `AGENTMESH_PROTO_DIR`, or the
    repository's `proto/` two levels above this package's project."""
    given = os.environ.get("AGENTMESH_PROTO_DIR")
    root = Path(given) if given else PACKAGE_DIR.parents[2] / "proto"
    if not (root / "agentmesh" / "v1" / "agent.proto").is_file():
        raise CodegenError(
            f"no agentmesh/v1/agent.proto under {root}: set AGENTMESH_PROTO_DIR to the "
            "repository's proto/ folder"
        )
    return root


def _protos(root: Path) -> list[Path]:
    return sorted((root / "agentmesh" / "v1").glob("*.proto"))


def stale() -> bool:
    """True when the stubs are missing or older than a proto."""
    if not STAMP.is_file():
        return True
    built = STAMP.stat().st_mtime
    return any(p.stat().st_mtime > built for p in _protos(proto_root()))


def generate() -> None:
    """Compiles every proto into `_generated/` (messages, gRPC stubs, type stubs)."""
    from grpc_tools import protoc  # build-time only
    import grpc_tools

    root = proto_root()
    wkt = Path(grpc_tools.__file__).resolve().parent / "_proto"
    OUT_DIR.mkdir(exist_ok=True)
    # doc:begin protoc
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{wkt}",
        f"--python_out={OUT_DIR}",
        f"--pyi_out={OUT_DIR}",
        f"--grpc_python_out={OUT_DIR}",
        *[str(p.relative_to(root)) for p in _protos(root)],
    ]
    # doc:end protoc
    if protoc.main(args) != 0:
        raise CodegenError(f"protoc failed on {root}")
    STAMP.touch()


def ensure() -> None:
    """Generates the stubs if they are missing or stale."""
    if stale():
        generate()


def main() -> int:
    try:
        if "--force" in sys.argv[1:] or stale():
            generate()
            print(f"generated stubs in {OUT_DIR}")
    except CodegenError as e:
        print(f"codegen: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
