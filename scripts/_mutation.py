"""scripts/mutation's helper: the shared test templates, and the score per module from mutants/.

    python scripts/_mutation.py score [--only MODULE] [--diffs]
    python scripts/_mutation.py module-name storage/spend         -> metaspend_pipeline.storage.spend
    python scripts/_mutation.py create-sqlite-template PATH
    python scripts/_mutation.py create-postgres-template NAME | drop-postgres-template NAME

The score reads mutmut's own results (mutants/<module>.py.meta: an exit code per mutant) with
mutmut's own meaning of the codes. A timeout counts as killed (the mutant made the tests hang, which
they detected); "no tests" (no selected test runs the mutated function) counts as survived.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package (its migrations make the templates), not an installed one
PACKAGE = "metaspend_pipeline"
KILLED = {"killed", "timeout", "caught by type check"}


def module_name(text: str) -> str:
    """`roas`, `storage/spend`, `storage.spend.py`, `metaspend_pipeline/meta/client.py` -> dotted name."""
    name = text.strip().removesuffix(".py").replace("/", ".").strip(".")
    if not name.startswith(PACKAGE + "."):
        name = f"{PACKAGE}.{name}"
    if not (ROOT / (name.replace(".", "/") + ".py")).is_file():
        raise SystemExit(f"no module {name} ({text!r}); give e.g. roas, storage/spend or meta/client")
    return name


def _mutated_modules() -> list[str]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return [path.removesuffix(".py").replace("/", ".") for path in config["only_mutate"]]


def score(only: list[str] | None, diffs: bool) -> int:
    from mutmut.stats import status_by_exit_code

    modules = only or _mutated_modules()
    header = (
        f"{'module':<36} {'killed':>6} {'total':>6} {'%':>6} {'survived':>8} {'timeout':>7} {'other':>5} {'unrun':>5}"
    )
    lines, survivors = [header, "-" * len(header)], []
    for module in modules:
        meta = ROOT / "mutants" / (module.replace(".", "/") + ".py.meta")
        if not meta.is_file():
            lines.append(f"{module:<36} {'(not run yet)':>14}")
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        statuses = {name: status_by_exit_code[code] for name, code in codes.items()}
        counts = Counter(statuses.values())
        killed = sum(counts[s] for s in KILLED)
        unrun = counts["not checked"]
        survived = sum(counts[s] for s in ("survived", "no tests"))
        other = len(codes) - killed - unrun - survived
        checked = len(codes) - unrun
        percent = f"{100 * killed / checked:.1f}" if checked else "-"
        lines.append(
            f"{module:<36} {killed:>6} {len(codes):>6} {percent:>6} {survived:>8} "
            f"{counts['timeout']:>7} {other:>5} {unrun:>5}"
        )
        path = Path(module.replace(".", "/") + ".py")
        not_killed = [n for n, s in sorted(statuses.items()) if s not in KILLED | {"not checked"}]
        survivors += [(path, n, statuses[n]) for n in not_killed]
    print("\n".join(lines))
    print(
        "\n% = killed (timeouts included) / mutants tested; unrun: not tested yet; other: suspicious, segfault, skipped"
    )
    if survivors:
        print(f"\nsurvivors ({len(survivors)}): `mutmut show <name>` prints the diff")
        for path, name, status in survivors:
            print(f"  {name}" + ("" if status == "survived" else f"  ({status})"))
            if diffs:
                print("\n".join("      " + line for line in _diff(path, name).splitlines()[2:]))
    return 0


def _diff(path: Path, name: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    os.chdir(ROOT)  # mutmut reads mutants/ relative to the working directory
    return get_diff_for_mutant(name, path=path)


def _postgres_admin_url() -> str:
    return os.environ.get("METASPEND_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _database_url(name: str | None = None) -> str:
    """The admin URL of the tests (conftest.py's), or the same server's database `name`."""
    import sqlalchemy as sa

    url = sa.make_url(_postgres_admin_url()).set(drivername="postgresql")
    if name:
        url = url.set(database=name)
    return url.render_as_string(hide_password=False)


def _admin_execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(_database_url(), autocommit=True) as admin:
        admin.execute(statement)


def create_postgres_template(name: str) -> None:
    from metaspend_pipeline.storage import db

    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin_execute(f'CREATE DATABASE "{name}"')
    db.upgrade(_database_url(name))
    db.engine_for(_database_url(name)).dispose()


def drop_postgres_template(name: str) -> None:
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_sqlite_template(path: str) -> None:
    from metaspend_pipeline.storage import db

    db.upgrade(f"sqlite:///{path}")
    db.engine_for(f"sqlite:///{path}").dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("score")
    s.add_argument("--only", action="append", help="a module, dotted (repeatable)")
    s.add_argument("--diffs", action="store_true", help="print each survivor's diff")
    for command in ("module-name", "create-sqlite-template", "create-postgres-template", "drop-postgres-template"):
        commands.add_parser(command).add_argument("value")
    args = parser.parse_args()
    if args.command == "score":
        return score(args.only, args.diffs)
    if args.command == "module-name":
        print(module_name(args.value))
    elif args.command == "create-sqlite-template":
        create_sqlite_template(args.value)
    elif args.command == "create-postgres-template":
        create_postgres_template(args.value)
    else:
        drop_postgres_template(args.value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
