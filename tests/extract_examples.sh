#!/bin/sh
# Writes the examples of the documentation, as they are written there, into OUTDIR as whole C
# files: doc_example.c (the example at the top of the header's documentation) and one
# readme_<name>.c for every ```c block of README.md, <name> being the marker
# <!-- name --> on the line before the block, or the block's number. Their include of the
# header is pointed at the checkout. Usage: sh tests/extract_examples.sh OUTDIR
set -eu
cd "$(dirname "$0")/.."
out=$1
mkdir -p "$out"
header=$(cd "$(dirname "$0")/.." && pwd)/videoroom_signal.h

# The header's example follows the line naming it: the lines indented by seven spaces up to the
# first line of prose.
awk '/\(This exact code is compiled by the project.s tests.\)/ { found = 1; next }
     found && /^       / { print substr($0, 8); next }
     found && /^ *$/ { print ""; next }
     found { exit }' videoroom_signal.h > "$out/doc_example.c"

rm -f "$out"/readme_*.c
awk -v out="$out" '
    /^<!-- [a-z0-9-]+ -->$/ { name = $2; next }
    /^```c$/ { n++; file = out "/readme_" (name != "" ? name : n) ".c"; name = ""; inside = 1; next }
    inside && /^```$/ { inside = 0; close(file); next }
    inside { print > file; next }
    { name = "" }' README.md

for file in "$out"/doc_example.c "$out"/readme_*.c; do
    sed "s|#include \"videoroom_signal.h\"|#include \"$header\"|" "$file" > "$file.tmp" && mv "$file.tmp" "$file"
done
