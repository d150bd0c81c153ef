"""`python -m staff`: serve the app; `python -m staff users add …` makes an account (the first
administrator included). A password comes from standard input or a prompt, never from the
command line, where other users of the machine could read it."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from staff.access import ROLE_NAMES, Role
from staff.accounts import AccountProblem
from staff.app import build, migrate
from staff.app import main as serve
from staff.settings import StaffSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m staff users")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="make an account")
    add.add_argument("--email", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--role", required=True, choices=[r.value for r in Role],
                     help="; ".join(f"{r.value}: {ROLE_NAMES[r]}" for r in Role))
    add.add_argument("--school", action="append", default=[], metavar="URN",
                     help="a school this person works for (repeat for several)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input instead of asking")
    return parser


async def _add(args: argparse.Namespace, password: str) -> int:
    staff = build(StaffSettings())
    try:
        await migrate(staff.engine)
        user = await staff.accounts.create(
            email=args.email, name=args.name, role=Role(args.role), password=password,
            schools=args.school or None, now=staff.clock.now())
    except AccountProblem as problem:
        print(f"not made: {problem}", file=sys.stderr)
        return 2
    finally:
        await staff.backend.close()
        await staff.engine.dispose()
    print(f"made account {user.id} ({user.role.value}) for {user.email}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] != ["users"]:
        serve()
        return 0
    args = _parser().parse_args(argv[1:])
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password (at least 12 characters): ")
    return asyncio.run(_add(args, password))
