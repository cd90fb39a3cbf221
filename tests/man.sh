#!/usr/bin/env bash
# The man pages against the tools (cmake/Install.cmake makes them with
# help2man): every option each tool's --help lists appears in its page, and
# the page carries the tool's --version. First the check itself is shown to
# fail on a page with one option taken out.
#
#   man.sh MAN_DIR SCRATCH      (MAN_DIR: the build's man/, with TOOL.1)
man_dir=${1:?usage: man.sh MAN_DIR SCRATCH}
shift
. "$(dirname "$0")/testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN}" "${AIRLLM_QUANT:?set AIRLLM_QUANT}"
S=$SCRATCH

# The options a --help text names: -x and --long-name wherever they start
# a word (the option column, and "-q, --quiet / -v, --verbose" lists).
options_of() { # HELP_FILE
    grep -oE -- '(^|[ ,/(])--?[A-Za-z][A-Za-z0-9-]*' "$1" | sed -E 's/^[ ,\/(]//' | sort -u
}
# A page's text: roff's \- is a plain -, font changes and \, \/ go.
page_text() { # PAGE
    sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\[,\/]//g' "$1"
}
# missing HELP PAGE: prints each option of HELP the page lacks
missing() {
    page_text "$2" >"$S/page.txt"
    options_of "$1" | while read -r opt; do
        grep -qE -- "(^|[^A-Za-z0-9-])${opt}([^A-Za-z0-9-]|$)" "$S/page.txt" || echo "$opt"
    done
}

# The check can fail: drop --dry-run's lines from a copy of airllm-split's page.
"$AIRLLM_SPLIT" --help >"$S/split.help"
grep -v -- 'dry\\-run' "$man_dir/airllm-split.1" >"$S/cut.1"
if [ "$(missing "$S/split.help" "$S/cut.1")" = "--dry-run" ]; then
    ok "a page without --dry-run is caught (and only that)"
else
    bad "the check missed the removed option: '$(missing "$S/split.help" "$S/cut.1" | tr '\n' ' ')'"
fi

tools=(split:"$AIRLLM_SPLIT" quant:"$AIRLLM_QUANT" verify:"$AIRLLM_VERIFY" run:"$AIRLLM_RUN")
# airllm-serve is built (and has a page) only where libmicrohttpd is found
[ -n "${AIRLLM_SERVE:-}" ] && tools+=(serve:"$AIRLLM_SERVE")
for t in "${tools[@]}"; do
    name=airllm-${t%%:*}
    bin=${t#*:}
    page=$man_dir/$name.1
    if [ ! -s "$page" ]; then
        bad "no man page $page"
        continue
    fi
    "$bin" --help >"$S/$name.help"
    n=$(options_of "$S/$name.help" | wc -l)
    lack=$(missing "$S/$name.help" "$page" | tr '\n' ' ')
    if [ "$n" -ge 8 ] && [ -z "$lack" ]; then
        ok "$name.1 has all $n options of $name --help"
    else
        bad "$name.1 lacks: '$lack' ($n options in --help)"
    fi
    version=$("$bin" --version | head -n 1)
    grep -q "^\.TH .*\"$version\"" "$page" && ok "$name.1 is for $version" ||
        bad "$name.1's .TH line is not for '$version': $(grep '^\.TH' "$page")"
    grep -q '^\.SH NAME' "$page" && grep -A1 '^\.SH NAME' "$page" | grep -q "^$name \\\\- " &&
        ok "$name.1 has its NAME line" || bad "$name.1: no 'NAME: $name - ...'"
done

finish
