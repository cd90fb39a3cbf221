#!/bin/sh
# Makes one man page from a tool's --help and --version (cmake/Install.cmake).
#
#   help2man.sh HELP2MAN INCLUDE.h2m OUT.1 TOOL [EMULATOR ARGS...]
#
# Writes OUT.1 and OUT.1.gz. With an emulator (a cross build), TOOL runs
# through it: help2man is given a wrapper script of the tool's name, since
# it names the page after the program it runs. The date on the page is
# SOURCE_DATE_EPOCH's when that is set (reproducible packages), and the
# gzip carries no name or time, so the same sources give the same bytes.
set -eu
help2man=$1 include=$2 out=$3 tool=$4
shift 4
prog=$tool
tmp=""
if [ $# -gt 0 ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    prog=$tmp/$(basename "$tool")
    {
        echo '#!/bin/sh'
        for a in "$@"; do printf "'%s' " "$a"; done
        printf "'%s' \"\$@\"\n" "$tool"
    } >"$prog"
    chmod +x "$prog"
fi
"$help2man" --no-info --include="$include" --output="$out.tmp" "$prog"
mv "$out.tmp" "$out"
gzip -n -9 -c "$out" >"$out.gz.tmp"
mv "$out.gz.tmp" "$out.gz"
