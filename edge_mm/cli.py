"""Command line: parse arguments, then call build / package / serve / info / check."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from edge_mm.config import Settings, load_settings
from edge_mm.errors import ConfigError

log = logging.getLogger("edge_mm.cli")


def default_config() -> Path | None:
    """settings.toml next to the executable (frozen), else in the working directory."""
    candidates = [Path.cwd() / "settings.toml"]
    if getattr(sys, "frozen", False):
        candidates.insert(0, Path(sys.executable).parent / "settings.toml")
    for c in candidates:
        if c.is_file():
            return c
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-mm", description="Offline multimodal inference server.")
    p.add_argument("--config", type=Path, help="settings.toml (default: next to the executable, else ./settings.toml)")
    p.add_argument("--log-level", default=os.environ.get("EDGE_MM_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build and verify artifacts for the configured models")
    b.add_argument("--only", nargs="+", metavar="NAME", help="build only these models")
    b.add_argument("--force", action="store_true", help="rebuild even when unchanged")
    b.add_argument("--allow-download", action="store_true", help="let hf: sources download (online build machines)")
    b.add_argument("--sign", type=Path, metavar="KEYFILE", help="sign manifest.json with this Ed25519 private key")
    b.add_argument(
        "--bundle",
        type=Path,
        metavar="OUT.tar",
        help="with --only NAME: also write that model as an update bundle for 'edge-mm pull' (signed with --sign)",
    )
    s = sub.add_parser("serve", help="serve the REST API")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument(
        "--engine",
        choices=("waitress", "ray"),
        default="waitress",
        help="waitress: this machine (default); ray: the models as Ray Serve deployments ([ray] settings)",
    )
    sub.add_parser("info", help="print what the manifest holds")
    sub.add_parser("check", help="self-test: load every model and run its recorded sample")
    k = sub.add_parser("package", help="bundle the executable with PyInstaller (edge_mm.spec)")
    k.add_argument("--onefile", action="store_true", help="one file (unpacks on every start) instead of a folder")
    k.add_argument("--dist", type=Path, help="output folder (default: dist/)")
    k.add_argument("--python", help="interpreter whose torch goes into the bundle (default: this one)")
    k.add_argument(
        "--flavour",
        choices=("cpu", "cuda", "lite"),
        help="the bundle must be this flavour; --python defaults to .venv-cpu / .venv-lite (lite: no torch)",
    )
    k.add_argument(
        "--no-excludes", dest="excludes", action="store_false", help="keep build-only packages (for measuring)"
    )
    k.add_argument("--sign", type=Path, metavar="KEYFILE", help="sign the bundle's manifest.json with this key")
    g = sub.add_parser("keygen", help="make an Ed25519 key pair for signed artifacts: OUT (private), OUT.pub")
    g.add_argument("out", type=Path, metavar="OUT")
    sub.add_parser("settings-doc", help="print the settings reference (docs/settings.md)")
    u = sub.add_parser("pull", help="fetch a signed model version bundle from a LAN HTTP server and serve it")
    u.add_argument("url", metavar="URL")
    u.add_argument("--no-load", action="store_true", help="only put it on disk; a running server is not told")
    r = sub.add_parser("rollback", help="serve the model's previous version again (running server or next start)")
    r.add_argument("name", metavar="NAME")
    fa = sub.add_parser("faces", help="export the registered faces to a file, or import them (another box's)")
    fa.add_argument("action", choices=("export", "import"))
    fa.add_argument("file", type=Path, metavar="FILE")
    fa.add_argument("--replace", action="store_true", help="import: empty the store first (else add the new ones)")
    f = sub.add_parser("finetune", help="fine-tune a token or text classifier on labelled data")
    try:
        from edge_mm.build.finetune.options import add_arguments  # argparse only, no torch
    except ImportError:  # the bundle carries no build code: main() says where finetune runs
        f.add_argument("rest", nargs=argparse.REMAINDER)
    else:
        add_arguments(f)
    return p


def _signer(key: Path | None) -> Callable[[Path], None]:
    """``--sign KEYFILE``: signs an artifacts folder's manifest (the key is loaded now, before the
    long work starts); without the option, does nothing."""
    if key is None:
        return lambda _root: None
    from edge_mm.build.signing import signer

    sign = signer(key)
    return lambda root: print(f"edge-mm: signed {sign(root)}")


def _build(args: argparse.Namespace, settings: Settings) -> None:
    from edge_mm.build.all_models import build_all

    if args.allow_download:
        settings = settings.replace(build__allow_download=True)
    sign = _signer(args.sign)
    if args.bundle is not None and (not args.only or len(args.only) != 1):
        raise ConfigError("--bundle writes one model version: name it with --only NAME")
    build_all(settings, only=args.only, force=args.force)
    sign(settings.path("runtime.artifacts_dir"))
    if args.bundle is not None:
        from edge_mm.build.version_bundle import write_bundle

        root = settings.path("runtime.artifacts_dir")
        out = write_bundle(root, args.only[0], args.bundle, sign=sign if args.sign is not None else None)
        print(f"edge-mm: wrote the update bundle {out}{'' if args.sign else ' (unsigned: pull refuses it)'}")


def _artifacts_command(args: argparse.Namespace, settings: Settings) -> int:
    """``info``; ``pull URL`` or ``rollback NAME`` (docs/model-versions.md); ``faces export|import FILE``."""
    if args.command == "faces":
        from edge_mm.runtime.faces_cli import faces_command

        return faces_command(settings, args.action, args.file, replace=args.replace)
    if args.command == "info":
        from edge_mm.manifest import read_manifest

        manifest = read_manifest(
            settings.path("runtime.artifacts_dir"), verify_key=settings.optional_path("runtime.verify_key")
        )
        print(manifest.to_json())
        return 0
    from edge_mm.runtime.update_cli import pull_command, rollback_command

    if args.command == "pull":
        return pull_command(settings, args.url, load=not args.no_load)
    return rollback_command(settings, args.name)


def _finetune(args: argparse.Namespace, settings: Settings) -> None:
    from edge_mm.build.finetune.options import from_args
    from edge_mm.build.finetune.run import finetune

    finetune(
        from_args(args),
        packages_dir=settings.path("build.packages_dir"),
        base_dir=settings.base_dir,
        settings_path=args.config or default_config(),
    )


def _serve(engine: str, settings: Settings) -> int:
    """The exit code: non-zero when a warm-up failed or the drain cut requests (edge_mm/server.py)."""
    if engine == "waitress":
        from edge_mm.server import serve

        return serve(settings)
    try:
        from edge_mm.ray_serve.run import serve_on_ray
    except ImportError as exc:
        raise ConfigError(f"--engine ray needs Ray Serve ({exc}): pip install -r requirements/ray.txt") from None
    serve_on_ray(settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "settings-doc":
        from edge_mm.tasks.table import settings_doc

        sys.stdout.write(settings_doc())
        return 0
    if getattr(sys, "frozen", False) and args.command in ("build", "package", "keygen", "finetune"):
        print(f"edge-mm: '{args.command}' runs from a source checkout, not from the bundle", file=sys.stderr)
        return 2
    try:
        if args.command == "keygen":
            from edge_mm.build.signing import keygen

            private, public = keygen(args.out)
            print(f"edge-mm: wrote {private} (private: keep it on the build machine) and {public} (runtime.verify_key)")
            return 0
        settings = load_settings(args.config or default_config())
        from edge_mm.tasks.table import check_models

        check_models(settings)
        if args.command == "build":
            _build(args, settings)
        elif args.command == "finetune":
            _finetune(args, settings)
        elif args.command == "serve":
            from edge_mm.runtime.malloc import use_jemalloc

            # before any thread: jemalloc replaces malloc only from process start (runtime/malloc.py)
            log.info("allocator: %s", use_jemalloc(settings["runtime.allocator"]))
            overrides = {k: v for k, v in (("server__host", args.host), ("server__port", args.port)) if v is not None}
            return _serve(args.engine, settings.replace(**overrides))
        elif args.command in ("info", "pull", "rollback", "faces"):
            return _artifacts_command(args, settings)
        elif args.command == "check":
            from edge_mm.runtime.self_check import run_check
            from edge_mm.tasks.table import LOADERS, OPTIONS

            return run_check(settings, LOADERS, options=OPTIONS)
        elif args.command == "package":
            from edge_mm.build.pyinstaller import package

            sign = _signer(args.sign)
            bundle = package(
                settings,
                onefile=args.onefile,
                dist=args.dist,
                python=args.python,
                excludes=args.excludes,
                flavour=args.flavour,
            )
            sign(bundle / "artifacts")  # packaging rewrites the manifest (a CPU bundle drops CUDA variants)
    except ConfigError as exc:
        print(f"edge-mm: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
