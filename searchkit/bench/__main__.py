"""``python -m searchkit.bench NAME [key=value ...]``."""

import importlib
import sys

from searchkit.bench import BENCHMARKS


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        names = ", ".join(sorted(BENCHMARKS))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"searchkit.bench: error: unknown benchmark '{argv[0]}' (choices: {names})", file=sys.stderr)
            return 2
        print(f"usage: python -m searchkit.bench NAME [key=value ...]   (NAME: {names})")
        return 0
    module = importlib.import_module(BENCHMARKS[argv[0]])
    return module.main(argv[1:])


sys.exit(main(sys.argv[1:]))
