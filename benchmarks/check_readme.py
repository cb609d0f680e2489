"""Re-measure the README's quick-start figures and say which still hold.

    python benchmarks/check_readme.py                      # main job + pytest --co (minutes)
    python benchmarks/check_readme.py --run-tests          # main job + the real test run (~10 min+)
    python benchmarks/check_readme.py --results runs/quickstart/results.json --skip-tests

What it reads from README.md (each must appear exactly once):

- the quick start's result line: ``ends with test accuracy **X** (test loss Y)``;
- the test-count sentence: ``Tests: **N passed, M skipped**``;
- the two quick-start commands: the main job must be ``python main.py
  --config=configs/quickstart.py ...`` and the test command must equal the last line of
  ``.ci/run``.

What it measures:

- the main job, ``python main.py --config=configs/quickstart.py --workdir=TMP`` in a temporary
  folder (or ``--results RESULTS_JSON`` of a run already made), compared at the README's
  number of decimals: accuracy and test loss;
- the test command with ``--co -q`` (collected = N + M) or, with ``--run-tests``, the real run
  (passed = N and skipped = M). The skip count depends on whether ``../shared/data`` (the small
  real LAMOST / SDSS sets) sits beside the checkout; the check says which case it ran in.

Prints one line per figure (``match`` / ``MISMATCH``); exits 0 when all match, 1 on a mismatch
or a failed run, 2 when the README lacks a figure it should state.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ACCURACY_LINE = re.compile(
    r"ends with test accuracy \*\*(?P<accuracy>[0-9]+\.[0-9]+)\*\*\s+"
    r"\(test loss (?P<loss>[0-9]+\.[0-9]+)\)")
TEST_COUNT = re.compile(r"Tests: \*\*(?P<passed>[0-9]+) passed, (?P<skipped>[0-9]+) skipped\*\*")
MAIN_JOB = "python main.py --config=configs/quickstart.py"
_COLLECTED = re.compile(r"(?P<n>[0-9]+)(?:/[0-9]+)? tests? collected")
_SUMMARY_COUNT = re.compile(
    r"(?P<n>[0-9]+) (?P<what>passed|skipped|failed|errors?|xfailed|xpassed)")


class ReadmeError(ValueError):
    """The README does not state a figure the check needs (or states it twice)."""


@dataclasses.dataclass(frozen=True)
class Claims:
    accuracy: str  # as written, so that the comparison uses the README's decimals
    test_loss: str
    passed: int
    skipped: int
    test_command: str


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    claimed: str
    measured: str
    ok: bool

    def line(self) -> str:
        verdict = "match" if self.ok else "MISMATCH"
        return f"{verdict:8}  {self.name}: README {self.claimed}, measured {self.measured}"


def _one(pattern: re.Pattern, text: str, what: str) -> re.Match:
    found = list(pattern.finditer(text))
    if len(found) != 1:
        raise ReadmeError(f"README: expected one {what} ({pattern.pattern!r}), found {len(found)}")
    return found[0]


def parse_readme(text: str) -> Claims:
    """The README's quick-start claims; ReadmeError naming what is missing."""
    result = _one(ACCURACY_LINE, text, "quick-start result line")
    count = _one(TEST_COUNT, text, "test-count sentence")
    if MAIN_JOB not in text:
        raise ReadmeError(f"README: the quick start's main job ({MAIN_JOB!r}) is missing")
    tests = [line for line in text.splitlines() if "-m pytest" in line and "&&" in line]
    if len(tests) != 1:
        raise ReadmeError(f"README: expected one install-and-test command line, found {len(tests)}")
    test_command = tests[0].split("&&")[-1].strip()
    return Claims(result["accuracy"], result["loss"], int(count["passed"]),
                  int(count["skipped"]), test_command)


def ci_test_command(ci_script: Path) -> str:
    """The last command line of .ci/run (the test command CI runs)."""
    lines = [line.strip() for line in ci_script.read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    return lines[-1]


def _same_at_decimals(claimed: str, value: float) -> tuple[bool, str]:
    decimals = len(claimed.split(".")[1])
    measured = f"{value:.{decimals}f}"
    return measured == claimed, measured


def compare_results(claims: Claims, results: dict) -> list[Check]:
    """The result line against a results.json (at the README's number of decimals)."""
    checks = []
    for name, claimed, key in (("test accuracy", claims.accuracy, "accuracy"),
                               ("test loss", claims.test_loss, "test_loss")):
        if key not in results:
            checks.append(Check(name, claimed, f"no {key!r} in results.json", False))
            continue
        ok, measured = _same_at_decimals(claimed, float(results[key]))
        checks.append(Check(name, claimed, measured, ok))
    return checks


_PER_FILE = re.compile(r"^\S+\.py: (?P<n>[0-9]+)$", re.MULTILINE)


def parse_collected(output: str) -> int | None:
    """``pytest --co``'s count of collected tests: its ``N tests collected`` line, or (``-qq``,
    as the README's ``-q`` plus ``--co -q`` gives) the sum of its ``file.py: N`` lines."""
    found = _COLLECTED.findall(output)
    if found:
        return int(found[-1])
    per_file = _PER_FILE.findall(output)
    return sum(int(n) for n in per_file) if per_file else None


def parse_summary(output: str) -> dict[str, int]:
    """The counts of pytest's last summary line (``346 passed, 40 skipped in 600.1s``)."""
    for line in reversed(output.strip().splitlines()):
        counts = {what: int(n) for n, what in _SUMMARY_COUNT.findall(line)}
        if "passed" in counts or "failed" in counts:
            counts.setdefault("passed", 0)
            counts.setdefault("skipped", 0)
            return counts
    return {}


def compare_collected(claims: Claims, collected: int | None) -> Check:
    total = claims.passed + claims.skipped
    return Check("tests collected (passed + skipped)", str(total),
                 "none (pytest --co failed)" if collected is None else str(collected),
                 collected == total)


def compare_summary(claims: Claims, counts: dict[str, int]) -> list[Check]:
    if not counts:
        return [Check("test run", f"{claims.passed} passed, {claims.skipped} skipped",
                      "no pytest summary line", False)]
    checks = [Check("tests passed", str(claims.passed), str(counts["passed"]),
                    counts["passed"] == claims.passed),
              Check("tests skipped", str(claims.skipped), str(counts["skipped"]),
                    counts["skipped"] == claims.skipped)]
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    if failed:
        checks.append(Check("tests failed or in error", "0", str(failed), False))
    return checks


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    print("+ " + shlex.join(command), flush=True)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)


def run_main_job(root: Path, env: dict[str, str]) -> tuple[dict | None, str]:
    with tempfile.TemporaryDirectory(prefix="check_readme_") as tmp:
        workdir = Path(tmp) / "quickstart"
        done = _run([sys.executable, "main.py", "--config=configs/quickstart.py",
                     f"--workdir={workdir}"], root, env)
        results = workdir / "results.json"
        if done.returncode != 0 or not results.exists():
            return None, f"exit {done.returncode}: " + (done.stderr or done.stdout)[-2000:]
        return json.loads(results.read_text()), ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--ci", type=Path, default=ROOT / ".ci" / "run",
                        help="the CI script whose last line is the test command")
    parser.add_argument("--results", type=Path,
                        help="results.json of a quick-start run already made: skip the training")
    parser.add_argument("--run-tests", action="store_true",
                        help="run the test command for real (passed / skipped), not --co")
    parser.add_argument("--skip-tests", action="store_true", help="check no test count")
    args = parser.parse_args(argv)

    try:
        claims = parse_readme(args.readme.read_text())
    except (OSError, ReadmeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    checks: list[Check] = []
    if args.ci.exists():
        ci = ci_test_command(args.ci)
        checks.append(Check("test command = .ci/run's", repr(claims.test_command), repr(ci),
                            ci == claims.test_command))

    root = args.readme.resolve().parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    if args.results:
        results = json.loads(args.results.read_text())
        checks += compare_results(claims, results)
    else:
        results, failure = run_main_job(root, env)
        if results is None:
            checks.append(Check("main job", "finishes", f"failed ({failure.strip()})", False))
        else:
            checks += compare_results(claims, results)

    if not args.skip_tests:
        shared = (root.parent / "shared" / "data").is_dir()
        print(f"../shared/data {'present' if shared else 'absent'}: skip counts depend on it",
              flush=True)
        command = shlex.split(claims.test_command)
        if command[:1] == ["python"]:
            command[0] = sys.executable
        if args.run_tests:
            done = _run(command, root, env)
            checks += compare_summary(claims, parse_summary(done.stdout + done.stderr))
        else:
            done = _run(command + ["--co", "-q"], root, env)
            checks.append(compare_collected(claims, parse_collected(done.stdout)))

    for check in checks:
        print(check.line())
    bad = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(bad)} of {len(checks)} figures match the README")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
