"""Run inside the artifact's interpreter (python3.13 -I -S -B): for every source in the directories
named on the command line, whether the bytecode beside it is the one this Python would load.

Prints one JSON document: per directory, the sources counted and the problems found, by kind,
each a list of paths:
- missing: a source without its pyc (__pycache__/NAME.cpython-313.pyc);
- other_python: a pyc of another Python's bytecode (its magic number);
- not_unchecked_hash: a pyc that is timestamp-based (invalid once packaging changes the times)
  or checked-hash (valid, but each import reads and hashes its source again);
- stale: a pyc of other source bytes than its source's (PEP 552's hash of the source);
- strays: anything else in __pycache__, such as a pyc whose source does not ship beside it.
"""

import importlib.util
import json
import os
import sys

UNCHECKED_HASH = 0b01  # PEP 552's flags: bit 0 hash-based, bit 1 check_source


def inspect(root: str) -> dict[str, object]:
    problems: dict[str, list[str]] = {}
    sources, expected = 0, set()
    for directory, _, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(directory, name)
            if os.path.basename(directory) == "__pycache__" or not name.endswith(".py"):
                continue
            sources += 1
            cached = importlib.util.cache_from_source(path)
            expected.add(cached)
            try:
                with open(cached, "rb") as pyc:
                    header = pyc.read(16)
            except FileNotFoundError:
                problems.setdefault("missing", []).append(path)
                continue
            with open(path, "rb") as source:
                digest = importlib.util.source_hash(source.read())
            if header[:4] != importlib.util.MAGIC_NUMBER:
                problems.setdefault("other_python", []).append(cached)
            elif int.from_bytes(header[4:8], "little") != UNCHECKED_HASH:
                problems.setdefault("not_unchecked_hash", []).append(cached)
            elif header[8:16] != digest:
                problems.setdefault("stale", []).append(cached)
    for directory, _, names in os.walk(root):
        if os.path.basename(directory) == "__pycache__":
            strays = [os.path.join(directory, n) for n in sorted(names)]
            strays = [path for path in strays if path not in expected]
            if strays:
                problems.setdefault("strays", []).extend(strays)
    return {"sources": sources, "problems": problems}


print(json.dumps({root: inspect(root) for root in sys.argv[1:]}))
