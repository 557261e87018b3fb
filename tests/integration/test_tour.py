#!/usr/bin/env python3
"""Runs the README's five-minute tour exactly as written.

The ```sh tour block of README.md is run with bash -e against a fresh
`cairn serve` on the default address (127.0.0.1:7070), from a temporary
directory whose build/release holds the cairn binary under test; every
command must succeed, and a few replies are checked.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request


def main():
    cairn, readme = os.path.abspath(sys.argv[1]), sys.argv[2]
    text = open(readme).read()
    m = re.search(r"```sh tour\n(.*?)```", text, re.S)
    if not m:
        print("README.md has no ```sh tour block", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="cairn-tour-")
    os.makedirs(os.path.join(work, "build", "release"))
    os.symlink(cairn, os.path.join(work, "build", "release", "cairn"))
    server = subprocess.Popen([cairn, "serve"], cwd=work,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(500):
            try:
                if urllib.request.urlopen(
                        "http://127.0.0.1:7070/readyz").status == 200:
                    break
            except OSError:
                time.sleep(0.02)
        else:
            print("server not ready", file=sys.stderr)
            return 1
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c",
                            m.group(1)], cwd=work, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        out = r.stdout.decode()
        print(out)
        if r.returncode != 0:
            print("the tour failed", file=sys.stderr)
            return 1
        for want in ['"version":1', '"version":3', "version_conflict",
                     "guard_pattern", '"by_type"', "cairn_appends_total"]:
            if want not in out:
                print("missing in the tour's output: " + want,
                      file=sys.stderr)
                return 1
        server.terminate()
        if server.wait(timeout=20) != 0:
            print("server did not exit 0 on SIGTERM", file=sys.stderr)
            return 1
        r = subprocess.run(["bash", "-c", "cairn verify ./cairn-data"],
                           cwd=work, env=dict(os.environ, PATH=os.path.join(
                               work, "build", "release") + ":" +
                               os.environ["PATH"]))
        if r.returncode != 0:
            return 1
        print("1 passed, 0 failed")
        return 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
