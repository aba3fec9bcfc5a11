#!/bin/sh
# The programs the judge tests drive evenflow with (clients nobody here wrote). Installed with
# apt-get when missing and running as root (as CI does); otherwise says what to install.
set -eu
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"  # nginx lives there; a user's PATH may lack it
need=""
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v h2load >/dev/null 2>&1 || need="$need nghttp2-client"
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
command -v redis-benchmark >/dev/null 2>&1 || need="$need redis-tools"
command -v dig >/dev/null 2>&1 || need="$need dnsutils"
command -v nginx >/dev/null 2>&1 || need="$need nginx"
command -v wrk >/dev/null 2>&1 || need="$need wrk"
# the C compiler mypyc's build of the data path needs (scripts/build_native.py); without it
# evenflow runs as pure Python and the tests still pass, but the benchmarks measure less
command -v cc >/dev/null 2>&1 || need="$need gcc"
# the dashboard judge drives Debian's chromium with Playwright (no browser download)
[ -x /usr/bin/chromium ] || need="$need chromium"
if [ -z "$need" ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing test tools:$need"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
else
    echo "the judge tests need:$need (install them, e.g. apt-get install$need)" >&2
    exit 2
fi
