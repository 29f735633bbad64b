#!/usr/bin/env bash
# Filter for a verbose pip build log on stdin: prints the compiler's progress lines only ("[ 42%] Building CXX
# object …" from make, "[120/380] Building CXX object …" from ninja), shortened to the file being built.
# Always succeeds, so the exit status of a pipeline `pip … | tee log | build_progress.sh` is pip's (with pipefail).
sed -u -n -E 's#^[[:space:]]*(\[ *[0-9]+(%|/[0-9]+)\]) (Building|Linking) ([A-Za-z+]+ )?(object |shared library |static library |executable )?(.*/)?([^/ ]+).*$#  \1 \3 \7#p' || true
