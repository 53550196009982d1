"""Regenerate the committed Python code of protos/simsearch/v1/*.proto with a pinned grpcio-tools.

    python scripts/gen_protos.py           # rewrite simsearch/_proto/v1/
    python scripts/gen_protos.py --check   # exit 1 if regenerating would change anything

The output goes to ``simsearch/_proto/v1/`` (``simsearch_pb2.py``, ``simsearch_pb2.pyi``,
``simsearch_pb2_grpc.py``). protoc names the proto's own package in the import it writes into
``*_pb2_grpc.py`` (``from simsearch.v1 import simsearch_pb2``), which would collide with the
``simsearch`` Python package, so that one line is rewritten to a relative import.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from importlib import metadata
from pathlib import Path

# Keep in step with the `codegen` extra in pyproject.toml.
GRPCIO_TOOLS_VERSION = "1.85.1"

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_DIR = PROTO_ROOT / "simsearch" / "v1"
OUT_DIR = ROOT / "simsearch" / "_proto" / "v1"
INIT = '"""Generated code of protos/simsearch/v1 (see scripts/gen_protos.py); do not edit."""\n'


def _check_tools() -> None:
    try:
        have = metadata.version("grpcio-tools")
    except metadata.PackageNotFoundError:
        sys.exit(f"gen_protos: grpcio-tools is not installed; pip install 'grpcio-tools=={GRPCIO_TOOLS_VERSION}' "
                 "(or the 'codegen' extra)")
    if have != GRPCIO_TOOLS_VERSION:
        sys.exit(f"gen_protos: grpcio-tools {GRPCIO_TOOLS_VERSION} is pinned but {have} is installed; "
                 f"pip install 'grpcio-tools=={GRPCIO_TOOLS_VERSION}' (or the 'codegen' extra)")


def generate() -> dict[str, str]:
    """Run protoc into a temporary directory and return {file name: text} of the final output."""
    _check_tools()
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(PROTO_DIR.glob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}"] + [str(p.relative_to(PROTO_ROOT)) for p in protos]
        if protoc.main(args) != 0:
            sys.exit("gen_protos: protoc failed")
        gen = Path(tmp) / "simsearch" / "v1"
        out = {p.name: p.read_text(encoding="utf-8") for p in sorted(gen.iterdir()) if p.is_file()}
    for name, text in out.items():
        if name.endswith("_pb2_grpc.py"):
            out[name] = re.sub(r"^from simsearch\.v1 import (\w+_pb2) as", r"from . import \1 as", text, flags=re.M)
    out["__init__.py"] = INIT
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare with the committed files")
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        stale = []
        for name, text in files.items():
            path = OUT_DIR / name
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            if old != text:
                stale.append(name)
                sys.stdout.writelines(difflib.unified_diff(
                    old.splitlines(True), text.splitlines(True), f"committed/{name}", f"regenerated/{name}", n=1))
        extra = sorted(p.name for p in OUT_DIR.glob("*.py*") if p.name not in files)
        if stale or extra:
            print(f"gen_protos: out of date: {stale + extra}; run python scripts/gen_protos.py", file=sys.stderr)
            return 1
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR.parent / "__init__.py").write_text('"""Generated protobuf and gRPC code, by protocol version."""\n')
    for name, text in files.items():
        (OUT_DIR / name).write_text(text, encoding="utf-8")
    print(f"gen_protos: wrote {len(files)} files to {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
