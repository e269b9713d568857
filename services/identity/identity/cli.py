"""Command line of the identity service.

``migrate`` · ``seed-demo`` (make run) · ``generate-holders N --out FILE`` ·
``load-holders FILE`` (JSON lines or CSV; COPY on PostgreSQL) ·
``face-attest --id-number ...`` (the development face provider, not in production).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from identity.config import IdentitySettings
from shared.cli import ensure_sqlite_dir
from shared.migrate import upgrade

MIGRATIONS = "identity:migrations"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m identity", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations up to head")
    seed = sub.add_parser("seed-demo", help="demo clients and holders (idempotent)")
    seed.add_argument("--out", type=Path, default=Path("var/demo-clients.json"))
    seed.add_argument("--holders-out", type=Path, default=Path("var/demo-holders.json"))
    seed.add_argument("--holders", type=int, default=300)
    gen = sub.add_parser("generate-holders", help="write N valid synthetic holders")
    gen.add_argument("count", type=int)
    gen.add_argument("--out", type=Path, required=True, help=".csv or JSON lines")
    gen.add_argument("--seed", type=int, default=2018)
    load = sub.add_parser("load-holders", help="load a JSON lines or CSV file of holders")
    load.add_argument("file", type=Path)
    load.add_argument("--batch-size", type=int, default=50_000)
    load.add_argument("--workers", type=int, default=None)
    face = sub.add_parser("face-attest", help="sign a development face attestation")
    face.add_argument("--id-number", required=True)
    face.add_argument("--liveness", type=float, default=0.99)
    face.add_argument("--match", type=float, default=0.97)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run one command; returns the exit status."""
    args = _parser().parse_args(argv)
    settings = IdentitySettings()
    if args.command == "migrate":
        ensure_sqlite_dir(settings.database_url)
        upgrade(MIGRATIONS, settings.database_url)
        print("identity: migrations applied")
    elif args.command == "seed-demo":
        from identity.seed import seed_demo

        ensure_sqlite_dir(settings.database_url)
        clients = asyncio.run(seed_demo(settings, args.out, args.holders_out, args.holders))
        print(
            f"identity: demo data ready: {len(clients)} clients in {args.out}, "
            f"{args.holders} holders (a few in {args.holders_out})\n"
            "  token: curl -u CLIENT_ID:CLIENT_SECRET -d grant_type=client_credentials "
            f"{settings.public_issuer}/oauth/token"
        )
    elif args.command == "generate-holders":
        from identity.loader.files import write_rows
        from identity.loader.synth import holders

        started = time.perf_counter()
        count = write_rows(args.out, holders(args.count, seed=args.seed))
        took = time.perf_counter() - started
        print(f"identity: wrote {count} holders to {args.out} in {took:.1f} s")
    elif args.command == "load-holders":
        from identity.loader.bulk import load

        report = asyncio.run(
            load(settings, args.file, batch_size=args.batch_size, workers=args.workers)
        )
        print(report.summary())
        return 0 if report.read else 1
    elif args.command == "face-attest":
        return _face_attest(settings, args)
    return 0


def _face_attest(settings: IdentitySettings, args: argparse.Namespace) -> int:
    from identity.holders.fields import check_id_number
    from identity.seed import face_key
    from shared.tokens.claims import FACE_ATTESTATION, FaceAttestationClaims
    from shared.tokens.codec import sign_token

    if settings.is_production:
        print("face-attest is a development tool", file=sys.stderr)
        return 2
    try:
        id_number = check_id_number(args.id_number)
    except ValueError as exc:
        print(f"--id-number {exc}", file=sys.stderr)
        return 2
    key, doc = face_key(settings)
    if not doc.get("client_id"):
        print(
            "run `python -m identity seed-demo` first (it registers the provider)", file=sys.stderr
        )
        return 2
    now = int(time.time())
    claims = FaceAttestationClaims(
        iss=doc["client_id"],
        sub="dev-face-" + secrets.token_hex(6),
        aud=settings.public_issuer,
        iat=now,
        exp=now + 120,
        jti=secrets.token_urlsafe(16),
        id_number_sha256=hashlib.sha256(id_number.encode()).hexdigest(),
        liveness=args.liveness,
        match=args.match,
    )
    print(sign_token(FACE_ATTESTATION, claims, key))
    return 0
