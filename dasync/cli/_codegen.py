"""``dasync codegen jsonschema|asyncapi|openapi|all|check FILE``: specs of a file's contracts.

FILE is loaded as ``dasync run`` loads it (its folder on ``sys.path``, its
``container``), and its services are constructed in memory to learn who calls
whom; nothing is started and nothing connects.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .._errors import DasyncError
from ._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, err, out

if TYPE_CHECKING:
    from ..codegen._output import Kind

__all__ = ["add_parser", "codegen_command"]

DESCRIPTION = """\
Generate the API specs of the contracts FILE defines or imports, or check
today's contracts against specs committed earlier.

  jsonschema  JSON Schema 2020-12 of every method's arguments and result, every
              event payload and every declared error (in $defs)
  asyncapi    AsyncAPI 3.0.0 of the NATS side: the real subjects (--namespace),
              headers, replies, events
  openapi     OpenAPI 3.1.0 of the HTTP gateway: POST /{Service}/{method},
              /routines/{id}, RFC 9457 problems
  all         the three, into -o DIR as <stem>.jsonschema.json, .asyncapi.json and
              .openapi.json
  check       compare with the specs in --against DIR (written by 'all'); one line
              per change, compatible or breaking, exit 1 on any breaking change

The output is deterministic (same contracts, same bytes), so specs can be
committed and reviewed; docs/specs.md tells what each holds and what breaks.
"""

EPILOG = """\
examples:
  dasync codegen openapi examples/shop/service.py
  dasync codegen asyncapi service.py --namespace staging -o service.asyncapi.json
  dasync codegen all service.py -o specs/
  dasync codegen check service.py --against specs/     # in CI, before deploying

exit status:
  0    written; or check found no breaking change
  1    check found a breaking change, or FILE did not load
  2    the command line is wrong, or --against DIR holds no spec of FILE
"""

_DOCUMENTS: tuple[Kind, ...] = ("jsonschema", "asyncapi", "openapi")
"""``codegen.KINDS`` (not imported: it would make every ``dasync`` command load pydantic)."""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "codegen",
        help="generate JSON Schema, AsyncAPI and OpenAPI specs, or check compatibility",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=[*_DOCUMENTS, "all", "check"], help="what to do")
    parser.add_argument(
        "file", metavar="FILE", help="Python file that defines or imports contracts"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write to OUT (a directory for 'all'; default: stdout)",
    )
    parser.add_argument(
        "--against",
        metavar="DIR",
        help="check: the directory of the committed specs ('dasync codegen all FILE -o DIR')",
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("DASYNC_NATS_NAMESPACE", ""),
        help="asyncapi: the deployment's dasync namespace, as in its subjects "
        "(default: $DASYNC_NATS_NAMESPACE, or none)",
    )
    parser.add_argument(
        "--security",
        action="append",
        choices=["bearer", "api-key"],
        default=[],
        help="openapi: require a bearer token or an API key on every route (repeat for either)",
    )
    parser.add_argument(
        "--api-version",
        default="1.0.0",
        help="the version written in the documents' info (default: 1.0.0)",
    )
    parser.add_argument(
        "--container",
        metavar="MODULE:ATTR",
        help="the container 'dasync run' would use, to construct services whose constructors "
        "take more than contracts (default: FILE's 'container', if any)",
    )
    parser.set_defaults(handler=codegen_command)


def codegen_command(args: argparse.Namespace) -> int:
    try:
        return _command(args)
    except CliError as exc:
        err(f"error: {exc}")
        return exc.code


def _command(args: argparse.Namespace) -> int:
    from .. import codegen

    if args.kind == "all" and not args.output:
        raise CliError("'all' writes three files: give the directory with -o DIR", EXIT_USAGE)
    if args.kind == "check" and not args.against:
        raise CliError("'check' needs --against DIR, the committed specs", EXIT_USAGE)
    contracts = _contracts(args)
    if args.kind == "check":
        return _check(args, contracts)
    kinds = _DOCUMENTS if args.kind == "all" else (cast("Kind", args.kind),)
    for kind in kinds:
        try:
            text = codegen.dumps(_document(kind, contracts, args))
        except DasyncError as exc:
            raise CliError(f"{args.file}: {exc}") from None
        if args.kind == "all":
            path = codegen.spec_path(args.output, args.file, kind)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            out(f"wrote {path}")
        elif args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            out(text.rstrip("\n"))
    return EXIT_OK


def _contracts(args: argparse.Namespace) -> Any:
    from .. import codegen
    from .._runtime._module import load_module
    from ..transports.nats import naming
    from ._run import _load_container, main_service_name

    try:
        naming.check_namespace(args.namespace)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    try:
        module = load_module(args.file)
        container = _load_container(args.container, module)
        return codegen.contracts_of_module(
            module, container=container, main_name=main_service_name
        )
    except DasyncError as exc:
        raise CliError(str(exc)) from None


def _document(kind: str, contracts: Any, args: argparse.Namespace) -> dict[str, Any]:
    from .. import codegen

    version = args.api_version
    if kind == "jsonschema":
        return codegen.jsonschema_document(contracts)
    if kind == "asyncapi":
        return codegen.asyncapi_document(contracts, namespace=args.namespace, version=version)
    security = list(dict.fromkeys(args.security))
    return codegen.openapi_document(contracts, security=security, version=version)


def _check(args: argparse.Namespace, contracts: Any) -> int:
    from .. import codegen

    committed = [codegen.spec_path(args.against, args.file, kind) for kind in _DOCUMENTS]
    found = next((path for path in committed if path.is_file()), None)
    if found is None:
        raise CliError(
            f"{args.against} holds no spec of {args.file} (looked for "
            + ", ".join(p.name for p in committed)
            + f"); write them with 'dasync codegen all {args.file} -o {args.against}'",
            EXIT_USAGE,
        )
    try:
        old = codegen.pool_of(json.loads(found.read_text(encoding="utf-8")))
    except (ValueError, AttributeError) as exc:
        raise CliError(f"{found}: not a spec dasync can read ({exc})", EXIT_USAGE) from None
    try:
        new = codegen.pool_of(codegen.jsonschema_document(contracts))
    except DasyncError as exc:
        raise CliError(f"{args.file}: {exc}") from None
    changes = codegen.compare(old, new)
    for change in changes:
        out(change.line())
    breaking = sum(c.verdict is codegen.Verdict.BREAKING for c in changes)
    if not changes:
        out(f"no change against {found}")
    else:
        out(f"{breaking} breaking, {len(changes) - breaking} compatible against {found}")
    return EXIT_FAILED if breaking else EXIT_OK
