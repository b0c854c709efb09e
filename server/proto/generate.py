"""Regenerate the Python code of the scangate.v1 API from server/proto.

    python server/proto/generate.py            # write python/scangate/v1/*_pb2*.py(i)
    python server/proto/generate.py --check    # exit 1 if the committed code is stale

The one way the generated modules are made; CI runs the check (tests/test_proto.py).
Needs the grpcio-tools version pinned in pyproject.toml's ``gen`` extra, so the
output is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "server" / "proto"
OUT_ROOT = ROOT / "python"
PACKAGE_DIR = Path("scangate") / "v1"


def protos() -> list[Path]:
    return sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Run protoc into ``out_root``; return the generated files (relative)."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"   # google/protobuf/*.proto
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out_root}",
            f"--pyi_out={out_root}", f"--grpc_python_out={out_root}"]
    args += [str(p.relative_to(PROTO_ROOT)) for p in protos()]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p.relative_to(out_root) for p in (out_root / PACKAGE_DIR).iterdir()
                  if p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")))


def check() -> list[str]:
    """Names of generated files that differ from (or are missing in) the tree."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = sorted(p.relative_to(OUT_ROOT) for p in (OUT_ROOT / PACKAGE_DIR).iterdir()
                           if p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")))
        stale = [str(p) for p in fresh
                 if not (OUT_ROOT / p).exists() or not filecmp.cmp(Path(tmp) / p, OUT_ROOT / p, shallow=False)]
        stale += [f"{p} (no .proto makes it)" for p in committed if p not in fresh]
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the generated code is out of date")
    args = parser.parse_args()
    if args.check:
        stale = check()
        for name in stale:
            print(f"stale: python/{name}", file=sys.stderr)
        if stale:
            print("run: python server/proto/generate.py", file=sys.stderr)
        return 1 if stale else 0
    for p in generate(OUT_ROOT):
        print(f"wrote python/{p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
