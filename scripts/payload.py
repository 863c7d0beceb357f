"""Measures what a GPU-machine command sends: the checkout's tracked files, its untracked files
that git does not ignore, and the carried paths given as arguments (e.g. `.gpu`).

Usage: python3 scripts/payload.py [CARRIED ...]

Prints the sizes and the largest files on stderr and one JSON line on stdout. Fails (exit 1),
naming the largest files, when the tracked tree passes 40 MiB or everything together passes
60 MiB (the GPU machine takes 64 MiB in all; the margin is for what a session adds by hand).
"""
import json
import os
import subprocess
import sys

MIB = 1 << 20
TREE_LIMIT = 40 * MIB
TOTAL_LIMIT = 60 * MIB


def git_files(*args):
    out = subprocess.run(["git", "ls-files", "-z", *args], capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def sizes(paths):
    """(path, bytes) of each regular file among `paths` (folders walked)."""
    found = []
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            for root, _, names in os.walk(path):
                found += [(os.path.join(root, n), os.lstat(os.path.join(root, n)).st_size)
                          for n in names]
        elif os.path.lexists(path):
            found.append((path, os.lstat(path).st_size))
    return found


def main():
    os.chdir(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True,
                            check=True, text=True).stdout.strip())
    groups = {
        "tracked": sizes(git_files()),
        "untracked": sizes(git_files("--others", "--exclude-standard")),
        "carried": sizes(sys.argv[1:]),
    }
    totals = {name: sum(s for _, s in files) for name, files in groups.items()}
    total = sum(totals.values())
    everything = sorted((f for files in groups.values() for f in files), key=lambda f: -f[1])
    largest = [{"path": p, "mib": round(s / MIB, 2)} for p, s in everything[:8]]
    problems = []
    if totals["tracked"] > TREE_LIMIT:
        problems.append(f"the tracked tree is {totals['tracked'] / MIB:.1f} MiB, over "
                        f"{TREE_LIMIT // MIB} MiB")
    if total > TOTAL_LIMIT:
        problems.append(f"everything sent is {total / MIB:.1f} MiB, over {TOTAL_LIMIT // MIB} MiB")

    for name, size in totals.items():
        print(f"{name:>9}: {size / MIB:6.1f} MiB ({len(groups[name])} files)", file=sys.stderr)
    print(f"{'total':>9}: {total / MIB:6.1f} MiB of {TOTAL_LIMIT // MIB} MiB allowed "
          f"(tracked tree at most {TREE_LIMIT // MIB} MiB)", file=sys.stderr)
    print("largest files:", file=sys.stderr)
    for row in largest:
        print(f"  {row['mib']:7.2f} MiB  {row['path']}", file=sys.stderr)
    for problem in problems:
        print(f"payload too large: {problem}", file=sys.stderr)
    print(json.dumps({**{f"{k}_mib": round(v / MIB, 2) for k, v in totals.items()},
                      "total_mib": round(total / MIB, 2), "limit_mib": TOTAL_LIMIT // MIB,
                      "tree_limit_mib": TREE_LIMIT // MIB, "within_budget": not problems,
                      "largest": largest}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
