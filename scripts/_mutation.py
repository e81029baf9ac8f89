"""scripts/mutation's helper: the shared test templates, and the score per module from mutants/.

    python scripts/_mutation.py score [--only MODULE] [--diffs] [--sample]
    python scripts/_mutation.py generate                       -> mutants/ (mutmut's mutants, none tested)
    python scripts/_mutation.py sample SIZE [--only MODULE]   -> the sample's mutants to test, one a line
    python scripts/_mutation.py module-name storage/spend         -> metaspend_pipeline.storage.spend
    python scripts/_mutation.py create-sqlite-template PATH
    python scripts/_mutation.py create-postgres-template NAME | drop-postgres-template NAME

The score reads mutmut's own results (mutants/<module>.py.meta: an exit code per mutant) with
mutmut's own meaning of the codes. A timeout counts as killed (the mutant made the tests hang, which
they detected); "no tests" (no selected test runs the mutated function) counts as survived.

A sample (`scripts/mutation --sample N`) is N mutants per module drawn at random with a fixed seed
(all of a module's mutants when it has fewer), kept in mutants/sample.json: the score of a sample
is killed / tested among its mutants, with a 95% Wilson interval for the module's full score.
Raising N keeps the mutants of a smaller N (each module's mutants are shuffled once, and the sample
is the first N), so a sample grows without testing its mutants again; a run tests the sample's
untested mutants and tests its survivors again, which tests added since may kill.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package (its migrations make the templates), not an installed one
PACKAGE = "metaspend_pipeline"
KILLED = {"killed", "timeout", "caught by type check"}
SAMPLE = ROOT / "mutants" / "sample.json"
SEED = "metaspend-mutation-sample-1"


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


def _meta(module: str) -> Path:
    return ROOT / "mutants" / (module.replace(".", "/") + ".py.meta")


def _exit_codes(module: str) -> dict[str, int | None] | None:
    """mutmut's result per mutant of `module` (None: not tested yet), or None before generation."""
    meta = _meta(module)
    return json.loads(meta.read_text())["exit_code_by_key"] if meta.is_file() else None


def _sampled(module: str, names: list[str], size: int) -> list[str]:
    shuffled = sorted(names)
    random.Random(f"{SEED}:{module}").shuffle(shuffled)
    return shuffled[:size]


def sample(size: int, only: list[str] | None) -> int:
    """Draw (or grow) each module's sample, record it, and print the mutants to test: those not
    tested yet, and the survivors (a test added since may kill them).

    A sample already drawn is kept: its mutants that still exist stay in it (a changed function's
    mutants are made again and untested), and it is topped up in the module's shuffled order."""
    from mutmut.stats import status_by_exit_code

    chosen = json.loads(SAMPLE.read_text()) if SAMPLE.is_file() else {}
    to_test = []
    for module in only or _mutated_modules():
        codes = _exit_codes(module)
        if codes is None:
            raise SystemExit(f"{module}: no mutants generated yet (mutants/ is missing them)")
        kept = [name for name in chosen.get(module, []) if name in codes]
        taken = set(kept)
        order = _sampled(module, list(codes), len(codes))
        chosen[module] = (kept + [name for name in order if name not in taken])[:size]
        to_test += [
            name
            for name in chosen[module]
            if codes[name] is None or status_by_exit_code[codes[name]] in ("survived", "no tests")
        ]
    SAMPLE.write_text(json.dumps(chosen, indent=1, sort_keys=True))
    print("\n".join(to_test))
    return 0


def generate() -> int:
    """mutmut's mutants of every module, without testing any (what `mutmut run` does first)."""
    from mutmut import __main__ as mutmut

    os.chdir(ROOT)
    mutmut.set_mutant_under_test("mutant_generation")
    Path("mutants").mkdir(exist_ok=True)
    mutmut.copy_src_dir()
    mutmut.copy_also_copy_files()
    mutmut.setup_source_paths()
    mutmut.store_lines_covered_by_tests()
    mutmut.create_mutants(os.cpu_count() or 2)
    return 0


def wilson_interval(killed: int, tested: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion killed / tested (its bounds as %)."""
    if tested == 0:
        return (0.0, 100.0)
    p = killed / tested
    centre = p + z * z / (2 * tested)
    spread = z * math.sqrt(p * (1 - p) / tested + z * z / (4 * tested * tested))
    denominator = 1 + z * z / tested
    return (100 * (centre - spread) / denominator, 100 * (centre + spread) / denominator)


def score(only: list[str] | None, diffs: bool, sampled: bool = False) -> int:
    from mutmut.stats import status_by_exit_code

    modules = only or _mutated_modules()
    samples = json.loads(SAMPLE.read_text()) if sampled and SAMPLE.is_file() else {}
    if sampled and not samples:
        raise SystemExit("no sample yet: run scripts/mutation --sample N")
    header = (
        f"{'module':<36} {'killed':>6} {'total':>6} {'%':>6} {'survived':>8} {'timeout':>7} {'other':>5} {'unrun':>5}"
    )
    if sampled:
        header += f" {'of':>5} {'95% interval':>13}"
    lines, survivors = [header, "-" * len(header)], []
    for module in modules:
        codes = _exit_codes(module)
        if codes is None or (sampled and module not in samples):
            lines.append(f"{module:<36} {'(not run yet)':>14}")
            continue
        population = len(codes)
        if sampled:
            codes = {name: codes[name] for name in samples[module]}
        statuses = {name: status_by_exit_code[code] for name, code in codes.items()}
        counts = Counter(statuses.values())
        killed = sum(counts[s] for s in KILLED)
        unrun = counts["not checked"]
        survived = sum(counts[s] for s in ("survived", "no tests"))
        other = len(codes) - killed - unrun - survived
        checked = len(codes) - unrun
        percent = f"{100 * killed / checked:.1f}" if checked else "-"
        line = (
            f"{module:<36} {killed:>6} {len(codes):>6} {percent:>6} {survived:>8} "
            f"{counts['timeout']:>7} {other:>5} {unrun:>5}"
        )
        if sampled:
            low, high = wilson_interval(killed, checked)
            line += f" {population:>5} {f'{low:.1f}-{high:.1f}':>13}"
        lines.append(line)
        path = Path(module.replace(".", "/") + ".py")
        not_killed = [n for n, s in sorted(statuses.items()) if s not in KILLED | {"not checked"}]
        survivors += [(path, n, statuses[n]) for n in not_killed]
    print("\n".join(lines))
    print(
        "\n% = killed (timeouts included) / mutants tested; unrun: not tested yet; other: suspicious, segfault, skipped"
    )
    if sampled:
        print(
            "a random sample per module (mutants/sample.json): total = its size, of = the module's mutants, "
            "95% interval = where the module's full score lies"
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
    s.add_argument("--sample", action="store_true", help="only the sampled mutants (mutants/sample.json)")
    d = commands.add_parser("sample")
    d.add_argument("size", type=int)
    d.add_argument("--only", action="append", help="a module, dotted (repeatable)")
    commands.add_parser("generate")
    for command in ("module-name", "create-sqlite-template", "create-postgres-template", "drop-postgres-template"):
        commands.add_parser(command).add_argument("value")
    args = parser.parse_args()
    if args.command == "score":
        return score(args.only, args.diffs, args.sample)
    if args.command == "generate":
        return generate()
    if args.command == "sample":
        return sample(args.size, args.only)
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
