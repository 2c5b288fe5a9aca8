"""The runner the conformance scripts share: every function named check_* in a script runs, failures
are reported together with their tracebacks, and the exit status is the number of failures."""

import sys
import traceback


def run(namespace):
    checks = [(n, f) for n, f in namespace.items() if n.startswith("check_") and callable(f)]
    failures = 0
    for name, f in checks:
        try:
            f()
            print(f"ok   {name}")
        except Exception:
            failures += 1
            print(f"FAIL {name}")
            traceback.print_exc()
    print(f"{len(checks) - failures}/{len(checks)} checks passed")
    sys.exit(failures)
