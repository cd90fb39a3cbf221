#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then only what it installed:
# the four tools (split, quant, verify, a greedy run against the golden),
# every public header compiling alone, airllm.pc, a program outside the tree
# (tests/install_reader.c) built with `pkg-config --cflags --libs airllm`
# against the shared library and with `--static` against the static one,
# reading a manifest the installed airllm-split wrote, `man airllm-split`,
# and where the installed airllm-run looks for the CUDA module.
#
#   install.sh BUILD_DIR MAN(ON|OFF) SCRATCH
build=${1:?usage: install.sh BUILD_DIR MAN SCRATCH}
man_expected=${2:?usage: install.sh BUILD_DIR MAN SCRATCH}
shift 2
. "$(dirname "$0")/testlib.sh"
S=$SCRATCH
P=$S/prefix
CC=${CC:-cc}

if cmake --install "$build" --prefix "$P" >"$S/install.log" 2>&1; then
    ok "cmake --install --prefix $P"
else
    bad "cmake --install: $(tail -c 600 "$S/install.log")"
    finish
    exit 1
fi
for t in split quant verify run; do
    [ -x "$P/bin/airllm-$t" ] && ok "bin/airllm-$t installed" || bad "no bin/airllm-$t"
done
pc=$(find "$P" -name airllm.pc | head -n 1)
if [ -z "$pc" ]; then
    bad "no airllm.pc installed"
    finish
    exit 1
fi
libdir=$(dirname "$(dirname "$pc")")
ok "airllm.pc in ${libdir#"$P"/}/pkgconfig"
export PKG_CONFIG_PATH=$(dirname "$pc")
for f in libairllm.a libairllm.so; do
    [ -e "$libdir/$f" ] && ok "$f installed" || bad "no $libdir/$f"
done

# The .pc file's version is the tools' version, and its paths point into
# the prefix it was installed to (it is relocatable).
want_version=$("$P/bin/airllm-split" --version | awk '{print $2}')
got_version=$(pkg-config --modversion airllm)
[ "$got_version" = "$want_version" ] && ok "pkg-config --modversion airllm = $got_version" ||
    bad "pkg-config version '$got_version', tools say '$want_version'"
inc=$(pkg-config --variable=includedir airllm)
[ "$(cd "$inc" 2>/dev/null && pwd -P)" = "$(cd "$P/include" && pwd -P)" ] &&
    ok "airllm.pc's includedir is the prefix's" || bad "includedir '$inc', not under $P"

# Each public header compiles on its own: it includes what it needs.
nh=0
for h in "$P"/include/airllm/*.h; do
    nh=$((nh + 1))
    if ! echo "#include <$(basename "$h")>" |
        $CC -std=c11 -Wall -Wextra -Werror -fsyntax-only $(pkg-config --cflags airllm) -x c - \
            2>"$S/hdr.err"; then
        bad "$(basename "$h") does not compile alone: $(head -c 400 "$S/hdr.err")"
    fi
done
[ $nh -ge 5 ] && ok "$nh public headers installed, each compiles alone" || bad "$nh headers"

# ---- the installed tools ----
run 0 "installed airllm-split" "$P/bin/airllm-split" -q "$MODELS/stories260K" "$S/split"
run 0 "installed airllm-quant -t nf4" "$P/bin/airllm-quant" -q -t nf4 "$S/split" "$S/nf4"
run 0 "installed airllm-verify --against the source" \
    "$P/bin/airllm-verify" -q --against "$MODELS/stories260K" "$S/nf4"
AIRLLM_RUN="$P/bin/airllm-run" golden "$S/split" "$SHARED_DIR/golden/stories260K.json" 1e-3

# ---- a program built against the install ----
# What it must print, from manifest.json itself.
python3 - "$S/split/manifest.json" >"$S/want.txt" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
n = 0
for u in m["units"]:
    if u.get("file"):
        k = sum(1 for t in m["tensors"] if t["unit"] == u["name"])
        n += k
        print("%s %s %d tensors" % (u["name"], u["file"], k))
print("%d units, %d tensors in files, %d in manifest.json, model %s" %
      (len(m["units"]), n, len(m["tensors"]), m["model"]["architecture"]))
EOF
reader_check() { # NAME: runs $S/NAME on the split directory
    run 0 "$1 reads the manifest and every unit" "$S/$1" "$S/split"
    if cmp -s "$S/last.out" "$S/want.txt"; then
        ok "$1: units and tensor counts as manifest.json says"
    else
        bad "$1 printed: $(head -c 400 "$S/last.out"); want: $(head -c 400 "$S/want.txt")"
    fi
}
# shared: -lairllm finds libairllm.so; the rpath stands in for ldconfig
if $CC -std=c11 -Wall -Wextra -Werror "$SRC_DIR/tests/install_reader.c" -o "$S/reader_shared" \
        $(pkg-config --cflags --libs airllm) -Wl,-rpath,"$libdir" 2>"$S/cc.err"; then
    ok "built against pkg-config --cflags --libs airllm"
    readelf -d "$S/reader_shared" | grep -q 'NEEDED.*libairllm\.so' &&
        ok "it links libairllm.so" || bad "reader_shared does not link libairllm.so"
    reader_check reader_shared
else
    bad "cc with pkg-config --cflags --libs airllm: $(head -c 600 "$S/cc.err")"
fi
# static: --static adds the libraries libairllm.a needs (Requires.private,
# Libs.private); -l:libairllm.a takes the archive although the .so is there
static_libs=$(pkg-config --static --libs airllm | sed 's/-lairllm\b/-l:libairllm.a/')
if $CC -std=c11 -Wall -Wextra -Werror "$SRC_DIR/tests/install_reader.c" -o "$S/reader_static" \
        $(pkg-config --cflags airllm) $static_libs 2>"$S/cc.err"; then
    ok "built against pkg-config --static --libs airllm ($static_libs)"
    readelf -d "$S/reader_static" | grep -q 'NEEDED.*libairllm' &&
        bad "reader_static links libairllm.so" || ok "it holds the static library"
    reader_check reader_static
else
    bad "cc with pkg-config --static: $(head -c 600 "$S/cc.err")"
fi
# and it can fail: a unit file changed after the split
cp -r "$S/split" "$S/bad"
printf 'X' | dd of="$S/bad/layer.00002.airc" bs=1 seek=5000 conv=notrunc status=none
run 1 "the reader refuses a changed unit file" "$S/reader_shared" "$S/bad"
expect_err "layer.00002.airc" "it names the file"

# ---- man pages ----
if [ "$man_expected" = ON ]; then
    for t in split quant verify run; do
        [ -f "$P/share/man/man1/airllm-$t.1.gz" ] && ok "man1/airllm-$t.1.gz installed" ||
            bad "no $P/share/man/man1/airllm-$t.1.gz"
    done
    if MANPATH="$P/share/man" MANWIDTH=100 man -P cat airllm-split >"$S/man.txt" 2>"$S/man.err" &&
        grep -q -- "--follow-symlinks" "$S/man.txt" && grep -q "^NAME" "$S/man.txt"; then
        ok "man airllm-split renders the installed page"
    else
        bad "man airllm-split: $(head -c 300 "$S/man.err") $(head -c 300 "$S/man.txt")"
    fi
else
    echo "info: man pages not built here (AIRLLM_MAN), not checked"
fi

# ---- where the installed airllm-run finds the CUDA module ----
# bin/../LIBDIR/airllm/airllm-cuda.so, unless one is beside it.
moddir=$libdir/airllm
if [ -f "$moddir/airllm-cuda.so" ]; then
    # the real module (a CUDA build): it must be found and loaded; without a
    # GPU it then fails for that reason instead
    "$P/bin/airllm-run" -q --device cuda --ids 1 -n 1 "$S/split" >/dev/null 2>"$S/cuda.err"
    if grep -qE "cannot find the CUDA backend|cannot load the CUDA backend" "$S/cuda.err"; then
        bad "installed airllm-run did not load $moddir/airllm-cuda.so: $(head -c 400 "$S/cuda.err")"
    else
        ok "installed airllm-run loads LIBDIR/airllm/airllm-cuda.so ($(head -c 120 "$S/cuda.err"))"
    fi
else
    run 1 "no module installed: --device cuda is a clear error" \
        "$P/bin/airllm-run" -q --device cuda --ids 1 -n 1 "$S/split"
    expect_err "neither $P/bin/airllm-cuda.so nor $P/bin/" "it names both places"
    # A stand-in module (no airllm_cuda_backend in it) in the installed
    # place is opened, which its error shows; one beside the binary wins.
    mkdir -p "$moddir"
    echo 'int airllm_not_a_backend(void) { return 0; }' >"$S/fake.c"
    $CC -shared -fPIC -o "$moddir/airllm-cuda.so" "$S/fake.c"
    run 1 "a module in LIBDIR/airllm/ is the one loaded" \
        "$P/bin/airllm-run" -q --device cuda --ids 1 -n 1 "$S/split"
    expect_err "airllm/airllm-cuda.so: not an airllm CUDA backend" "it names LIBDIR/airllm's"
    cp "$moddir/airllm-cuda.so" "$P/bin/airllm-cuda.so"
    run 1 "a module beside airllm-run comes first" \
        "$P/bin/airllm-run" -q --device cuda --ids 1 -n 1 "$S/split"
    expect_err "$P/bin/airllm-cuda.so: not an airllm CUDA backend" "it names the one beside it"
fi

finish
